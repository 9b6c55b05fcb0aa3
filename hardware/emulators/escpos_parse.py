"""Sans-IO ESC/POS parser for the printer emulator: bytes in any chunking → a document model.

Own copy of the command table (devices.md §2.1, §2.6), not the agent's encoder: the emulator must
catch the agent's mistakes, not share them.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from hardware.emulators.receipt import (
    Barcode,
    Cut,
    DrawerKick,
    Feed,
    Image,
    QrCode,
    Receipt,
    TextLine,
    TextStyle,
)

ALIGNS = ("left", "center", "right")
# GS k function B m values (65–79) and function A (0–6) → names.
SYMBOLOGIES = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR",
    72: "CODE93", 73: "CODE128", 74: "GS1-128",
}  # fmt: skip
QR_EC = {0x30: "L", 0x31: "M", 0x32: "Q", 0x33: "H"}
CODE_PAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252",
              17: "cp866", 18: "cp852", 19: "cp858"}  # fmt: skip
# Fixed-length commands: prefix → total length in bytes.
_FIXED = {
    b"\x1b@": 2, b"\x1b2": 2, b"\x1bE": 3, b"\x1bG": 3, b"\x1b-": 3, b"\x1ba": 3, b"\x1b!": 3,
    b"\x1bM": 3, b"\x1bt": 3, b"\x1bR": 3, b"\x1bd": 3, b"\x1bJ": 3, b"\x1b3": 3, b"\x1bV": 3,
    b"\x1b{": 3, b"\x1bp": 5, b"\x1d!": 3, b"\x1dB": 3, b"\x1dH": 3, b"\x1df": 3, b"\x1dh": 3,
    b"\x1dw": 3, b"\x1da": 3, b"\x1db": 3, b"\x1dL": 4, b"\x1dW": 4, b"\x1dP": 4,
    b"\x1c&": 2, b"\x1c.": 2, b"\x1c!": 3, b"\x1cW": 3, b"\x1cC": 3, b"\x1cS": 4, b"\x1cp": 4,
    b"\x10\x04": 3, b"\x10\x05": 3,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProcessIdRequest:
    """GS ( H fn 48: answer `37 22 pid 00` now that everything before it is processed."""

    pid: bytes


@dataclass(frozen=True, slots=True)
class AsbEnable:
    """GS a n: push 4-byte status blocks for the enabled bits."""

    flags: int


Signal = Receipt | ProcessIdRequest | AsbEnable


def _arg(n: int) -> int:
    """Many one-byte arguments accept both n and ASCII '0' + n."""
    return n - 0x30 if n >= 0x30 else n


# Style commands: prefix → how the argument changes the style (devices.md §2.1).
_STYLE_SETTERS: dict[bytes, Callable[[TextStyle, int], TextStyle]] = {
    b"\x1bE": lambda s, n: replace(s, bold=bool(n & 1)),
    b"\x1b-": lambda s, n: replace(s, underline=_arg(n)),
    b"\x1ba": lambda s, n: replace(s, align=ALIGNS[_arg(n) % 3]),
    b"\x1d!": lambda s, n: replace(s, width=(n >> 4) + 1, height=(n & 0x0F) + 1),
    b"\x1b!": lambda s, n: replace(
        s, bold=bool(n & 8), width=2 if n & 32 else 1, height=2 if n & 16 else 1
    ),
}


class EscPosParser:
    """Feeds on print data; keeps the page in progress, returns finished receipts and requests."""

    def __init__(self, chinese_default: bool = False) -> None:
        self._chinese_default = chinese_default
        self._buf = bytearray()
        self.unknown = 0  # commands skipped because this parser does not know them
        self._reset()

    def feed(self, data: bytes) -> list[Signal]:
        """Parse whatever is complete; an incomplete command waits for more bytes."""
        self._buf += data
        signals: list[Signal] = []
        pos = 0
        while pos < len(self._buf):
            used = self._command(pos, signals)
            if used == 0:
                break
            pos += used
        del self._buf[:pos]
        return signals

    @property
    def current(self) -> Receipt:
        """What has been printed since the last cut."""
        return self._page

    def _reset(self) -> None:
        self._page = Receipt()
        self._style = TextStyle()
        self._line: list[str] = []
        self._line_style: TextStyle | None = None
        self._chinese = self._chinese_default
        self._codepage = "cp437"
        self._hri = 0
        self._qr: dict[str, int] = {"module": 3, "ec": 0x30, "model": 0x32}
        self._qr_data = b""

    def _command(self, pos: int, signals: list[Signal]) -> int:
        buf = self._buf
        b0 = buf[pos]
        if b0 == 0x0A:
            self._end_line()
            return 1
        if b0 in (0x1B, 0x1D, 0x1C, 0x10):
            if len(buf) - pos < 2:
                return 0
            return self._escape(pos, bytes(buf[pos : pos + 2]), signals)
        if b0 < 0x20 or b0 == 0x7F:
            return 1  # CR, HT, FF and the rest: nothing to record
        if self._chinese and b0 >= 0x81:
            if len(buf) - pos < 2:
                return 0
            self._text(bytes(buf[pos : pos + 2]).decode("gb18030", errors="replace"))
            return 2
        self._text(bytes([b0]).decode(self._codepage, errors="replace"))
        return 1

    def _escape(self, pos: int, prefix: bytes, signals: list[Signal]) -> int:
        buf = self._buf
        avail = len(buf) - pos
        if prefix in (b"\x1dV", b"\x1dk", b"\x1d(", b"\x1dv", b"\x10\x14"):
            return self._variable(pos, prefix, signals)
        need = _FIXED.get(prefix)
        if need is None:
            self.unknown += 1
            return 1 if prefix[0] == 0x10 else 2  # a stray DLE is one control byte
        if avail < need:
            return 0
        args = bytes(buf[pos + 2 : pos + need])
        self._fixed(prefix, args, signals)
        return need

    def _fixed(self, prefix: bytes, args: bytes, signals: list[Signal]) -> None:
        n = args[0] if args else 0
        setter = _STYLE_SETTERS.get(prefix)
        if setter is not None:
            self._style = setter(self._style, n)
        elif prefix == b"\x1b@":
            elements = self._page.elements
            self._line, self._line_style = [], None  # ESC @ clears the line buffer…
            self._reset()
            self._page.elements = elements  # …but not what is already on paper
        elif prefix == b"\x1bt":
            self._codepage = CODE_PAGES.get(n, "cp437")
        elif prefix in (b"\x1c&", b"\x1c."):
            self._chinese = prefix == b"\x1c&"
        elif prefix == b"\x1dH":
            self._hri = _arg(n)
        elif prefix == b"\x1bd":
            self._end_partial_line()
            self._page.elements.append(Feed(n))
        elif prefix == b"\x1bp":
            pin = 2 if n in (0, 0x30) else 5  # ESC p m t1 t2: times in 2 ms units
            self._page.elements.append(DrawerKick(pin, args[1] * 2, args[2] * 2))
        elif prefix == b"\x1da":
            signals.append(AsbEnable(n))

    def _variable(self, pos: int, prefix: bytes, signals: list[Signal]) -> int:
        buf = self._buf
        avail = len(buf) - pos
        if avail < 3:
            return 0
        m = buf[pos + 2]
        if prefix == b"\x1dV":  # GS V m [n]: 0/1/48/49 cut now, 65/66 feed n then cut
            need = 4 if m in (65, 66) else 3
            if avail < need:
                return 0
            self._end_partial_line()
            self._finish(Cut(partial=m in (1, 49, 66)), signals)
            return need
        if prefix == b"\x10\x14":  # DLE DC4 fn …: fn 1 is the real-time drawer pulse
            if avail < 5:
                return 0
            if m == 1:
                pin = 2 if buf[pos + 3] == 0 else 5
                self._page.elements.append(DrawerKick(pin, buf[pos + 4] * 100, buf[pos + 4] * 100))
            return 5 if m != 8 else min(avail, 7)
        if prefix == b"\x1dk":
            return self._barcode(pos, m)
        if prefix == b"\x1dv":  # GS v 0 m xL xH yL yH d…
            if avail < 8:
                return 0
            xbytes = buf[pos + 4] | buf[pos + 5] << 8
            ydots = buf[pos + 6] | buf[pos + 7] << 8
            need = 8 + xbytes * ydots
            if avail < need:
                return 0
            self._end_partial_line()
            self._page.elements.append(Image(xbytes * 8, ydots))
            return need
        # GS ( fn pL pH …: length-prefixed functions.
        if avail < 5:
            return 0
        need = 5 + (buf[pos + 3] | buf[pos + 4] << 8)
        if avail < need:
            return 0
        body = bytes(buf[pos + 5 : pos + need])
        if m == ord("k") and len(body) >= 2 and body[0] == 0x31:
            self._qr_function(body[1], body[2:])
        elif m == ord("H") and len(body) == 6 and body[:2] == b"\x30\x30":
            signals.append(ProcessIdRequest(body[2:6]))
        else:
            self.unknown += 1
        return need

    def _barcode(self, pos: int, m: int) -> int:
        buf = self._buf
        if m <= 6:  # function A: data up to NUL
            end = buf.find(b"\x00", pos + 3)
            if end < 0:
                return 0
            data, need = bytes(buf[pos + 3 : end]), end + 1 - pos
        else:  # function B: explicit length
            if len(buf) - pos < 4:
                return 0
            need = 4 + buf[pos + 3]
            if len(buf) - pos < need:
                return 0
            data = bytes(buf[pos + 4 : pos + need])
        text = data.decode("latin-1")
        if m == 73 and text[:1] == "{":
            text = text[2:].replace("{{", "{")  # drop the code-set selector, unescape "{"
        self._end_partial_line()
        self._page.elements.append(Barcode(SYMBOLOGIES.get(m, f"m{m}"), text, self._hri))
        return need

    def _qr_function(self, fn: int, params: bytes) -> None:
        if fn == 0x41 and params:
            self._qr["model"] = params[0]
        elif fn == 0x43 and params:
            self._qr["module"] = params[0]
        elif fn == 0x45 and params:
            self._qr["ec"] = params[0]
        elif fn == 0x50 and params[:1] == b"\x30":
            self._qr_data = params[1:]
        elif fn == 0x51:
            self._end_partial_line()
            model = 1 if self._qr["model"] == 0x31 else 2
            ec = QR_EC.get(self._qr["ec"], "?")
            self._page.elements.append(QrCode(self._qr_data, self._qr["module"], ec, model))

    def _text(self, chars: str) -> None:
        if self._line_style is None:
            self._line_style = self._style
        self._line.append(chars)

    def _end_line(self) -> None:
        style = self._line_style or self._style
        self._page.elements.append(TextLine("".join(self._line), style))
        self._line, self._line_style = [], None

    def _end_partial_line(self) -> None:
        if self._line:  # a printer prints pending text before a barcode, feed or cut
            self._end_line()

    def _finish(self, cut: Cut, signals: list[Signal]) -> None:
        self._page.elements.append(cut)
        signals.append(self._page)
        self._page = Receipt()
