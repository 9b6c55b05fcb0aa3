"""The emulated printer's brain, sans-IO: state, real-time status, held data, receipts."""

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from hardware.emulators.escpos_parse import AsbEnable, EscPosParser, ProcessIdRequest
from hardware.emulators.receipt import Receipt

JUNK_REPLY = 0xFF  # breaks every fixed bit of the 0xx1xx10 status pattern (devices.md §2.2)


@dataclass(frozen=True, slots=True)
class PrinterState:
    """The sensors and switches DLE EOT reports; all False is a printer ready to print."""

    offline: bool = False  # offline for no other reason (feed button, waiting for recovery)
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    cutter_error: bool = False
    unrecoverable: bool = False
    drawer_pin3: bool = False

    @property
    def can_print(self) -> bool:
        """Whether data received is printed now or held in the buffer."""
        return not (
            self.offline
            or self.cover_open
            or self.paper_out
            or self.cutter_error
            or self.unrecoverable
        )

    def dle_eot(self, n: int) -> int:
        """The one-byte answer to DLE EOT n: 0xx1xx10 plus the bits set (devices.md §2.2)."""
        return _bits(0x12, _ROWS[n](self))

    def asb(self) -> bytes:
        """The 4-byte Automatic Status Back block (devices.md §2.3)."""
        first = _bits(0x10, ((self.drawer_pin3, 0x04), (not self.can_print, 0x08),
                             (self.cover_open, 0x20)))  # fmt: skip
        error = _bits(0, ((self.cutter_error, 0x08), (self.unrecoverable, 0x20)))
        paper = _bits(0, ((self.paper_near_end or self.paper_out, 0x03), (self.paper_out, 0x0C)))
        return bytes([first, error, paper, 0])


def _bits(base: int, pairs: tuple[tuple[bool, int], ...]) -> int:
    return base | sum(mask for on, mask in pairs if on)


# DLE EOT n → (condition, bit) pairs (devices.md §2.2; n = 4 sets near end along with end).
_ROWS: dict[int, Callable[[PrinterState], tuple[tuple[bool, int], ...]]] = {
    1: lambda s: ((s.drawer_pin3, 0x04), (not s.can_print, 0x08)),
    2: lambda s: (
        (s.cover_open, 0x04),
        (s.paper_out, 0x20),
        (s.cutter_error or s.unrecoverable, 0x40),
    ),
    3: lambda s: ((s.cutter_error, 0x08), (s.unrecoverable, 0x20)),
    4: lambda s: ((s.paper_near_end or s.paper_out, 0x0C), (s.paper_out, 0x60)),
}


class StatusMode(StrEnum):
    """How the emulator answers DLE EOT: properly, not at all, or with garbage."""

    NORMAL = "normal"
    SILENT = "silent"
    JUNK = "junk"


@dataclass(frozen=True, slots=True)
class Output:
    """What the printer sends back after some input, and whether it then drops the link."""

    reply: bytes = b""
    hang_up: bool = False


class PrinterCore:
    """The printer's brain, sans-IO: bytes in, bytes out; data is held while it cannot print."""

    def __init__(
        self, *, chinese_default: bool = False, on_receipt: Callable[[Receipt], None] | None = None
    ) -> None:
        self.state = PrinterState()
        self.status_mode = StatusMode.NORMAL
        # Fault: print the job, then hang up instead of answering its GS ( H (a lost confirm).
        self.hang_up_on_confirm = False
        # A cheap clone ignores GS ( H: the job prints, no process-ID answer ever comes.
        self.supports_process_id = True
        # Receipts left on the roll (None: endless). At 0 the next data finds the paper out and
        # is held in the buffer, as a printer whose paper ends mid-job holds the rest.
        self.paper_left: int | None = None
        self.receipts: list[Receipt] = []
        self.status_requests = 0
        self.bytes_received = 0
        self._chinese_default = chinese_default
        self._on_receipt = on_receipt
        self._power_on()

    @property
    def held(self) -> int:
        """Bytes received but not printed yet (cover open, no paper, offline)."""
        return len(self._held)

    @property
    def current(self) -> Receipt:
        """What has been printed since the last cut."""
        return self._parser.current

    def receive(self, data: bytes) -> Output:
        """Bytes from the host: real-time requests answered at once, print data in order."""
        self.bytes_received += len(data)
        reply = self._realtime(data)
        self._held += data
        out = self._process()
        return Output(reply + out.reply, out.hang_up)

    def set_status(self, **changes: bool) -> Output:
        """Flip sensors (see PrinterState); held data prints once nothing stops it."""
        before = self.state
        self.state = replace(self.state, **changes)
        pushed = self.state.asb() if self._asb and self.state != before else b""
        out = self._process()
        return Output(pushed + out.reply, out.hang_up)

    def power_cycle(self) -> None:
        """Lose the receive buffer, the page in progress and ASB, as a real power cut does."""
        self._power_on()

    def _power_on(self) -> None:
        self._parser = EscPosParser(chinese_default=self._chinese_default)
        self._held = bytearray()
        self._tail = b""  # the end of a DLE EOT split across reads
        self._asb = 0

    def _realtime(self, data: bytes) -> bytes:
        # Printers act on DLE EOT wherever it appears, even inside other data (devices.md §2.2).
        buf, out, start = self._tail + data, bytearray(), 0
        while (found := buf.find(b"\x10\x04", start)) >= 0 and found + 2 < len(buf):
            n = buf[found + 2]
            if n in _ROWS:
                self.status_requests += 1
                out += self._status_byte(n)
                start = found + 3
            else:
                start = found + 1
        rest = buf[start:]
        self._tail = (
            rest[-2:] if rest[-2:] == b"\x10\x04" else rest[-1:] if rest[-1:] == b"\x10" else b""
        )
        return bytes(out)

    def _status_byte(self, n: int) -> bytes:
        if self.status_mode is StatusMode.SILENT:
            return b""
        if self.status_mode is StatusMode.JUNK:
            return bytes([JUNK_REPLY])
        return bytes([self.state.dle_eot(n)])

    def _process(self) -> Output:
        if self.paper_left is not None and self.paper_left <= 0 and self._held:
            self.state = replace(self.state, paper_near_end=True, paper_out=True)
        if not self.state.can_print or not self._held:
            return Output()
        data, self._held = bytes(self._held), bytearray()
        reply = bytearray()
        for signal in self._parser.feed(data):
            if isinstance(signal, Receipt):
                self.receipts.append(signal)
                if self.paper_left is not None:
                    self.paper_left -= 1
                if self._on_receipt is not None:
                    self._on_receipt(signal)
            elif isinstance(signal, ProcessIdRequest):
                if self.hang_up_on_confirm:
                    return Output(bytes(reply), hang_up=True)
                if self.supports_process_id and self.status_mode is not StatusMode.SILENT:
                    reply += b"\x37\x22" + signal.pid + b"\x00"  # Epson process-ID response
            elif isinstance(signal, AsbEnable):
                self._asb = signal.flags
                if signal.flags:
                    reply += self.state.asb()
        return Output(bytes(reply))


STATUS_FLAGS = tuple(f.name for f in fields(PrinterState))
