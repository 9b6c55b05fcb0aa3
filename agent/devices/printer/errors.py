"""The printer package's exceptions, split by what the caller can do about them."""

from agent.errors import DeviceError


class PrinterError(DeviceError):
    """Root of every error the printer package raises on purpose."""


class EncodeError(PrinterError, ValueError):
    """Content cannot be put on paper (bad template data): fail the job, never retry it."""


class StatusError(PrinterError):
    """A status byte broke the fixed bit pattern: count it and poll again, never crash."""


class QueueError(PrinterError):
    """The durable print queue could not be read or written; the driver backs off and retries."""
