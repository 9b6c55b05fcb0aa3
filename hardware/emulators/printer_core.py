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


@dataclass(slots=True)
class LinkFault:
    """A one-shot hang-up: answer `markers` GS ( H requests, then drop the link.

    With `then_bytes` None the link drops at the next marker instead of answering it; else
    the printer takes `then_bytes` more bytes after the last answered marker, then drops.
    """

    markers: int
    then_bytes: int | None = None
    bytes_left: int | None = None  # counting down once the markers are used up


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
        # A link drop at a chosen point (see LinkFault, hang_up_at_marker, hang_up_mid_data).
        self.fault: LinkFault | None = None
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

    def hang_up_at_marker(self, answered: int) -> None:
        """Answer `answered` more GS ( H markers, then drop the link at the next one."""
        self.fault = LinkFault(answered)

    def hang_up_mid_data(self, answered: int, then_bytes: int) -> None:
        """Answer `answered` (≥ 1) more markers, take `then_bytes` more bytes, drop the link."""
        if answered < 1 or then_bytes < 1:
            raise ValueError("hang_up_mid_data needs answered ≥ 1 and then_bytes ≥ 1")
        self.fault = LinkFault(answered, then_bytes)

    def receive(self, data: bytes) -> Output:
        """Bytes from the host: real-time requests answered at once, print data in order."""
        cut_off = False
        fault = self.fault
        if fault is not None and fault.bytes_left is not None:
            data, fault.bytes_left = data[: fault.bytes_left], fault.bytes_left - len(data)
            cut_off = fault.bytes_left <= 0  # the rest never arrives: the link is gone
        self.bytes_received += len(data)
        reply = self._realtime(data)
        self._held += data
        out = self._process()
        if cut_off:
            self.fault = None
        return Output(reply + out.reply, out.hang_up or cut_off)

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
                if self._hang_up_at(signal):
                    return Output(bytes(reply), hang_up=True)
                if self.supports_process_id and self.status_mode is not StatusMode.SILENT:
                    reply += b"\x37\x22" + signal.pid + b"\x00"  # Epson process-ID response
            elif isinstance(signal, AsbEnable):
                self._asb = signal.flags
                if signal.flags:
                    reply += self.state.asb()
        return Output(bytes(reply))

    def _hang_up_at(self, signal: ProcessIdRequest) -> bool:
        """Whether the armed fault drops the link at this marker (then it is not answered)."""
        fault = self.fault
        if fault is None or fault.bytes_left is not None:
            return False
        if fault.markers == 0:
            self.fault = None
            return True
        fault.markers -= 1
        if fault.markers == 0 and fault.then_bytes is not None:
            fault.bytes_left = fault.then_bytes  # receive() counts these down, then cuts off
        return False


STATUS_FLAGS = tuple(f.name for f in fields(PrinterState))
