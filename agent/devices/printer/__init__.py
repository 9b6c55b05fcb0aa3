"""ESC/POS receipt printers: pure encoder, status and templates, a durable queue, two transports."""

from agent.devices.printer.driver import EscPosPrinter, SerialPrinter, TcpPrinter
from agent.devices.printer.errors import EncodeError, PrinterError, QueueError, StatusError
from agent.devices.printer.queue import Job, JobState

__all__ = [
    "EncodeError",
    "EscPosPrinter",
    "Job",
    "JobState",
    "PrinterError",
    "QueueError",
    "SerialPrinter",
    "StatusError",
    "TcpPrinter",
]
