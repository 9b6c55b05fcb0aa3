"""The in-store agent: config, durable outbox, sync, device drivers, CLI."""

__version__ = "0.1.0"
