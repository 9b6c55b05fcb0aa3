"""Durable SQLite outbox: group commit, byte cap with per-kind drops, dead letters."""

from agent.outbox.outbox import Outbox, oldest_age_s
from agent.outbox.records import AppendResult, Guard, Identity, OutboxStats, StoredEvent

__all__ = [
    "AppendResult",
    "Guard",
    "Identity",
    "Outbox",
    "OutboxStats",
    "StoredEvent",
    "oldest_age_s",
]
