"""Pure ESC/POS encoder: each function returns the bytes of one command (devices.md §2.1)."""

import unicodedata
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from agent.devices.printer.errors import EncodeError

ESC, GS, FS, DLE, LF, NUL = b"\x1b", b"\x1d", b"\x1c", b"\x10", b"\n", b"\x00"


class Align(IntEnum):
    """`ESC a n` justification."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


class Hri(IntEnum):
    """`GS H n`: where the human-readable digits go relative to a 1D barcode."""

    NONE = 0
    ABOVE = 1
    BELOW = 2
    BOTH = 3


class Symbology(StrEnum):
    """1D barcodes the templates use; each maps to a `GS k` function-B `m` value."""

    EAN13 = "EAN13"
    CODE128 = "CODE128"


# GS k function B (m = 65–79, explicit length byte): EAN13 = 67, CODE128 = 73 (devices.md §2.1).
BARCODE_M: dict[Symbology, int] = {Symbology.EAN13: 67, Symbology.CODE128: 73}
# GS ( k cn = 0x31 (QR): EC level byte for fn 69 (0x45), model byte for fn 65 (0x41).
QR_EC: dict[str, int] = {"L": 0x30, "M": 0x31, "Q": 0x32, "H": 0x33}
QR_MODEL: dict[int, int] = {1: 0x31, 2: 0x32}
QR_MAX_BYTES = 7089  # model 2, version 40, numeric: the largest store any printer accepts
# ESC t n code tables (Epson numbering, shared by most clones).
CODE_PAGES: dict[str, int] = {
    "cp437": 0, "cp850": 2, "cp860": 3, "cp863": 4, "cp865": 5,
    "cp1252": 16, "cp866": 17, "cp852": 18, "cp858": 19,
}  # fmt: skip
DRAWER_PINS: dict[int, int] = {2: 0, 5: 1}  # ESC p m: connector pin 2 → m = 0, pin 5 → m = 1


@dataclass(frozen=True, slots=True)
class Style:
    """How one line looks; `width`/`height` are 1–8 character multiples."""

    bold: bool = False
    underline: int = 0  # 0 off, 1 thin, 2 thick (ESC - n)
    width: int = 1
    height: int = 1
    align: Align = Align.LEFT


PLAIN = Style()


def init() -> bytes:
    """ESC @: reset to power-on settings, clearing the print buffer."""
    return ESC + b"@"


def bold(on: bool) -> bytes:
    """ESC E n: emphasized on/off."""
    return ESC + b"E" + bytes([int(on)])


def underline(dots: int) -> bytes:
    """ESC - n: underline 0 (off), 1 or 2 dots thick."""
    _check(0 <= dots <= 2, f"underline must be 0–2, not {dots}")
    return ESC + b"-" + bytes([dots])


def align(where: Align) -> bytes:
    """ESC a n: left, center or right justification."""
    return ESC + b"a" + bytes([Align(where)])


def size(width: int = 1, height: int = 1) -> bytes:
    """GS ! n: character magnification; high nibble width−1, low nibble height−1."""
    _check(1 <= width <= 8 and 1 <= height <= 8, f"size must be 1–8, not {width}x{height}")
    return GS + b"!" + bytes([(width - 1) << 4 | (height - 1)])


def code_page(name: str) -> bytes:
    """ESC t n: select a single-byte character code table."""
    try:
        return ESC + b"t" + bytes([CODE_PAGES[name]])
    except KeyError:
        raise EncodeError(f"unknown code page {name!r}") from None


def chinese(on: bool) -> bytes:
    """FS & enters Chinese (2-byte GB) mode, FS . leaves it (devices.md §2.1)."""
    return FS + (b"&" if on else b".")


def feed(lines: int = 1) -> bytes:
    """ESC d n: print the buffer and feed n lines."""
    _check(0 <= lines <= 255, f"feed must be 0–255 lines, not {lines}")
    return ESC + b"d" + bytes([lines])


def text(value: str, codepage: str = "cp437") -> bytes:
    """Encode one run of text: ASCII as is, else `codepage`, else GB18030 inside FS & … FS .."""
    bad = [c for c in value if unicodedata.category(c) == "Cc"]
    # A control byte inside data would be read as a command: refuse rather than inject.
    _check(not bad, f"control character {bad[0]!r} in text" if bad else "")
    if value.isascii():
        return value.encode("ascii")
    try:
        return code_page(codepage) + value.encode(codepage)
    except UnicodeEncodeError:
        pass
    for char in value:
        try:
            width = len(char.encode("gb18030"))
        except UnicodeEncodeError:
            width = 0
        # 4-byte GB18030 sequences are not printable on these printers (devices.md §2.1, SP91).
        _check(width in (1, 2), f"character {char!r} cannot be printed (not in GBK/{codepage})")
    return chinese(True) + value.encode("gb18030") + chinese(False)


def line(value: str, style: Style = PLAIN, codepage: str = "cp437") -> bytes:
    """One printed line in `style`, then LF, then the style reset so lines never bleed."""
    styled = style != PLAIN
    return b"".join(
        (
            _style_bytes(style) if styled else b"",
            text(value, codepage),
            LF,
            _style_bytes(PLAIN) if styled else b"",
        )
    )


def barcode(
    symbology: Symbology,
    data: str,
    *,
    hri: Hri = Hri.BELOW,
    height: int = 80,
    module_width: int = 3,
) -> bytes:
    """GS H/h/w then GS k function B; validates data so a bad code never reaches paper."""
    _check(1 <= height <= 255, f"barcode height must be 1–255 dots, not {height}")
    _check(2 <= module_width <= 6, f"module width must be 2–6, not {module_width}")
    if symbology is Symbology.EAN13:
        digits = data.isascii() and data.isdigit()
        _check(digits and len(data) in (12, 13), f"EAN-13 needs 12–13 digits, not {data!r}")
        _check(len(data) == 12 or _ean_check(data[:12]) == data[12], f"bad EAN-13 check {data}")
        body = data.encode("ascii")
    else:
        _check(data.isascii() and data.isprintable() and data != "", "CODE128: printable ASCII")
        # "{B" selects code set B; "{" itself is the escape, so a literal one is sent as "{{".
        body = b"{B" + data.replace("{", "{{").encode("ascii")
    _check(len(body) <= 255, f"barcode data too long ({len(body)} bytes)")
    return b"".join(
        (
            GS + b"H" + bytes([Hri(hri)]),
            GS + b"h" + bytes([height]),
            GS + b"w" + bytes([module_width]),
            GS + b"k" + bytes([BARCODE_M[symbology], len(body)]) + body,
        )
    )


def qr(data: str | bytes, *, module: int = 6, ec: str = "M", model: int = 2) -> bytes:
    """GS ( k: select model, module size, EC level, store the data, print it."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _check(0 < len(payload) <= QR_MAX_BYTES, f"QR data must be 1–{QR_MAX_BYTES} bytes")
    _check(1 <= module <= 16, f"QR module size must be 1–16, not {module}")
    _check(ec in QR_EC and model in QR_MODEL, f"bad QR settings ec={ec!r} model={model}")
    store_len = len(payload) + 3  # pL + 256·pH counts cn, fn and m too (devices.md §2.1)
    return b"".join(
        (
            _qr_fn(b"\x41", bytes([QR_MODEL[model], 0])),  # fn 65: model
            _qr_fn(b"\x43", bytes([module])),  # fn 67: module size
            _qr_fn(b"\x45", bytes([QR_EC[ec]])),  # fn 69: error correction
            GS + b"(k" + store_len.to_bytes(2, "little") + b"\x31\x50\x30" + payload,  # fn 80
            _qr_fn(b"\x51", b"\x30"),  # fn 81: print the stored symbol
        )
    )


def cut(partial: bool = False, feed_lines: int | None = None) -> bytes:
    """GS V: cut now (function A), or feed `feed_lines` and cut (function B)."""
    if feed_lines is None:
        return GS + b"V" + (b"\x01" if partial else b"\x00")
    _check(0 <= feed_lines <= 255, f"cut feed must be 0–255, not {feed_lines}")
    return GS + b"V" + bytes([66 if partial else 65, feed_lines])


def drawer_kick(pin: int = 2, on_ms: int = 50, off_ms: int = 500) -> bytes:
    """ESC p m t1 t2: pulse the drawer connector; times are in units of 2 ms."""
    _check(pin in DRAWER_PINS, f"drawer pin must be 2 or 5, not {pin}")
    t1, t2 = on_ms // 2, off_ms // 2
    _check(1 <= t1 <= 255 and 1 <= t2 <= 255, "drawer pulse times must be 2–510 ms")
    return ESC + b"p" + bytes([DRAWER_PINS[pin], t1, t2])


def asb(flags: int) -> bytes:
    """GS a n: enable Automatic Status Back (bit 0 drawer, 1 online, 2 error, 3 paper)."""
    _check(0 <= flags <= 0xFF, f"ASB flags must be one byte, not {flags}")
    return GS + b"a" + bytes([flags])


def process_id(pid: bytes) -> bytes:
    """GS ( H fn=48: ask for `37 22 pid 00` once everything before it has been processed."""
    _check(len(pid) == 4 and all(0x30 <= b <= 0x7E for b in pid), "process id: 4 bytes 30h–7Eh")
    return GS + b"(H" + b"\x06\x00" + b"\x30\x30" + pid  # pL=6: fn, m and d1–d4


def _qr_fn(fn: bytes, params: bytes) -> bytes:
    return GS + b"(k" + (len(params) + 2).to_bytes(2, "little") + b"\x31" + fn + params


def _style_bytes(style: Style) -> bytes:
    return (
        bold(style.bold)
        + underline(style.underline)
        + size(style.width, style.height)
        + align(style.align)
    )


def _ean_check(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return str((10 - total % 10) % 10)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise EncodeError(message)
