"""Sans-IO printer status: DLE EOT requests, a framer for what comes back, UPOS-style states."""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from agent.devices.printer.errors import StatusError

REQUESTS = (1, 2, 3, 4)  # DLE EOT n: printer, offline cause, error cause, roll paper


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer last said about itself; every flag False means ready."""

    offline: bool = False
    cover_open: bool = False
    paper_near_end: bool = False
    paper_out: bool = False
    cutter_error: bool = False
    unrecoverable: bool = False
    auto_recoverable: bool = False
    error: bool = False  # DLE EOT 2 bit 6: "an error occurred", cause in DLE EOT 3

    @property
    def condition(self) -> str:
        """The most severe condition, as device.status names it; "ok" when none."""
        return next((name for flag, name, _ in CONDITIONS if getattr(self, flag)), "ok")

    @property
    def can_print(self) -> bool:
        """False while any condition that stops the printer holds."""
        return not any(getattr(self, flag) for flag, _, blocks in CONDITIONS if blocks)


# (flag, device.status condition, stops printing), most severe first; UPOS POSPrinter names
# its states the same way (CoverOpen, RecEmpty, RecNearEnd: odoo_upos.md §5.3).
CONDITIONS: tuple[tuple[str, str, bool], ...] = (
    ("unrecoverable", "unrecoverable_error", True),
    ("cover_open", "cover_open", True),
    ("paper_out", "paper_out", True),
    ("cutter_error", "cutter_error", True),
    ("auto_recoverable", "recoverable_error", True),
    ("error", "printer_error", True),
    ("offline", "printer_offline", True),
    ("paper_near_end", "paper_near_end", False),
)

# DLE EOT n reply: bit mask → flag (devices.md §2.2). A two-bit mask is set if either bit is:
# printers set both sensor bits together, and one alone still means the sensor tripped.
REPLY_BITS: dict[int, dict[int, str]] = {
    1: {0x08: "offline"},
    2: {0x04: "cover_open", 0x20: "paper_out", 0x40: "error"},
    3: {0x08: "cutter_error", 0x20: "unrecoverable", 0x40: "auto_recoverable"},
    4: {0x0C: "paper_near_end", 0x60: "paper_out"},
}
# ASB block (GS a), bytes 1–3 (devices.md §2.3, Epson TM-U220 layout); byte 4 is model specific.
ASB_BITS: tuple[dict[int, str], ...] = (
    {0x08: "offline", 0x20: "cover_open"},
    {0x08: "cutter_error", 0x20: "unrecoverable", 0x40: "auto_recoverable"},
    {0x03: "paper_near_end", 0x0C: "paper_out"},
)
# Fixed bits (devices.md §2.2): a DLE EOT reply is 0xx1xx10, the first ASB byte 0xx1xx00.
_FIXED_MASK = 0x93
_REPLY_PATTERN = 0x12
_ASB_PATTERN = 0x10
_ASB_TAIL_MASK = 0x90  # Epson APG: bits 4 and 7 of ASB bytes 2–4 are fixed at 0
ASB_LEN = 4
# Epson "response" blocks: header 37h, identifier, data, NUL; 22h is the GS ( H process-ID reply.
_RESPONSE_HEADER = 0x37
_PROCESS_ID = 0x22
_PROCESS_ID_LEN = 7  # 37 22 d1 d2 d3 d4 00, each d in 30h–7Eh


def request(n: int) -> bytes:
    """DLE EOT n: the real-time status request, answered even while offline."""
    if n not in REQUESTS:
        raise ValueError(f"DLE EOT n must be 1–4, not {n}")
    return b"\x10\x04" + bytes([n])


def decode_reply(n: int, value: int) -> dict[str, bool]:
    """Flags from one DLE EOT n reply byte; StatusError if its fixed bits are wrong."""
    if n not in REPLY_BITS:
        raise StatusError(f"no DLE EOT {n}")
    if not 0 <= value <= 0xFF or value & _FIXED_MASK != _REPLY_PATTERN:
        raise StatusError(f"DLE EOT {n} reply {value:#04x} breaks the 0xx1xx10 pattern")
    return {flag: bool(value & mask) for mask, flag in REPLY_BITS[n].items()}


def merge(replies: Mapping[int, int]) -> PrinterStatus:
    """One status from the replies to DLE EOT 1–4 (any subset); StatusError on a bad byte."""
    flags: dict[str, bool] = {}
    for n, value in sorted(replies.items()):
        for flag, on in decode_reply(n, value).items():
            flags[flag] = flags.get(flag, False) or on
    return PrinterStatus(**flags)


def decode_asb(block: bytes) -> PrinterStatus:
    """Status from one 4-byte ASB block; StatusError if any fixed bit is wrong."""
    if len(block) != ASB_LEN or block[0] & _FIXED_MASK != _ASB_PATTERN:
        raise StatusError(f"ASB block {block.hex(' ')} breaks the 0xx1xx00 header pattern")
    if any(b & _ASB_TAIL_MASK for b in block[1:]):
        raise StatusError(f"ASB block {block.hex(' ')} has bit 4 or 7 set after byte 1")
    flags = {f.name: False for f in fields(PrinterStatus)}
    for byte, table in zip(block, ASB_BITS, strict=False):
        for mask, flag in table.items():
            flags[flag] = flags[flag] or bool(byte & mask)
    return replace(PrinterStatus(), **flags)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to DLE EOT `n`."""

    n: int
    value: int


@dataclass(frozen=True, slots=True)
class AsbBlock:
    """An Automatic Status Back block the printer pushed on its own."""

    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class ProcessDone:
    """GS ( H answered: everything sent before process id `pid` has been processed."""

    pid: bytes


@dataclass(frozen=True, slots=True)
class Junk:
    """Bytes that fit no pattern (noise, wrong baud rate, an unknown model's reply)."""

    data: bytes
    reason: str


Item = Reply | AsbBlock | ProcessDone | Junk


class StatusFramer:
    """Splits what a printer sends back into replies, ASB blocks, process-ID answers and junk."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._block = bytearray()  # a partial ASB or response block
        self.junk = 0

    @property
    def pending(self) -> int:
        """DLE EOT requests sent and not answered yet."""
        return len(self._pending)

    def expect(self, *ns: int) -> bytes:
        """Register requests for DLE EOT `ns` (replies come back in order); the bytes to send."""
        out = b"".join(request(n) for n in ns)
        self._pending.extend(ns)
        return out

    def reset(self) -> None:
        """Forget outstanding requests and any partial block (after a timeout or reconnect)."""
        self._pending.clear()
        self._block.clear()

    def feed(self, data: bytes) -> list[Item]:
        """Consume bytes in any chunking; returns every complete item in arrival order."""
        items: list[Item] = []
        for byte in data:
            items.extend(self._byte(byte))
        self.junk += sum(isinstance(item, Junk) for item in items)
        return items

    def _byte(self, byte: int) -> list[Item]:
        if self._block:
            return self._continue_block(byte)
        if byte & _FIXED_MASK == _REPLY_PATTERN:
            if not self._pending:
                return [Junk(bytes([byte]), "status byte nobody asked for")]
            return [Reply(self._pending.popleft(), byte)]
        if byte & _FIXED_MASK == _ASB_PATTERN or byte == _RESPONSE_HEADER:
            self._block.append(byte)
            return []
        if self._pending:  # the printer answered a request with garbage: that request is spent
            n = self._pending.popleft()
            return [Junk(bytes([byte]), f"reply to DLE EOT {n} breaks the 0xx1xx10 pattern")]
        return [Junk(bytes([byte]), "unexpected byte")]

    def _continue_block(self, byte: int) -> list[Item]:
        block = bytes(self._block) + bytes([byte])
        if block[0] != _RESPONSE_HEADER:
            self._block.append(byte)
            if len(block) < ASB_LEN:
                return []
            self._block.clear()
            try:
                return [AsbBlock(decode_asb(block))]
            except StatusError as exc:
                return [Junk(block, str(exc))]
        done = len(block) == _PROCESS_ID_LEN and byte == 0
        fits = byte == _PROCESS_ID if len(block) == 2 else 0x30 <= byte <= 0x7E
        if done or (fits and len(block) < _PROCESS_ID_LEN):
            self._block.append(byte)
            if not done:
                return []
            self._block.clear()
            return [ProcessDone(block[2:6])]
        # Not a process-ID answer after all: the partial block is junk, this byte starts afresh.
        self._block.clear()
        return [Junk(block[:-1], "unsupported response block"), *self._byte(byte)]
