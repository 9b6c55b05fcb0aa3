"""Keyboard layouts as explicit tables: Linux key code → character per level (devices.md §1.5).

A wedge scanner sends key *positions* for the country it is set to; the same code means a
different character under another layout (odoo_upos.md §4 item 8). The tables follow the
xkb symbols files (`us`, `de`, `fr`, `gb` basic) for the main block; the AltGr level lists
only ASCII and a few symbols (€ µ ² ³ ¤); other AltGr keys decode as unknown.
"""

from collections.abc import Mapping
from dataclasses import dataclass

# Key codes from linux/input-event-codes.h.
KEY_TAB = 15
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_NUMLOCK = 69
KEY_SCROLLLOCK = 70
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100
KEY_LEFTMETA = 125
KEY_RIGHTMETA = 126

# The main block row by row, left to right, as xkb names them (TLDE AE01…AE12, AD01…AD12
# BKSL, AC01…AC11, LSGT AB01…AB10). BKSL sits beside Enter on ISO keyboards, above on ANSI.
ROW_E = (41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
ROW_D = (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 43)
ROW_C = (30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
ROW_B = (86, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53)

# Numeric keypad with NumLock on (scanners in "keypad emulation" mode); KP Dot is per layout.
KEYPAD: dict[int, str] = {
    55: "*", 71: "7", 72: "8", 73: "9", 74: "-", 75: "4", 76: "5", 77: "6", 78: "+",
    79: "1", 80: "2", 81: "3", 82: "0", 98: "/", 117: "=",
}  # fmt: skip
KEYPAD_DIGITS: dict[int, int] = {code: int(ch) for code, ch in KEYPAD.items() if ch.isdigit()}
KEY_KPDOT = 83

# Keys a scanner can be told to send instead of GS (config `gs_substitute = "F8"`).
FUNCTION_KEYS: dict[str, int] = {
    **{f"F{n}": 58 + n for n in range(1, 11)},  # KEY_F1 = 59 … KEY_F10 = 68
    "F11": 87,
    "F12": 88,
}

MODIFIERS = frozenset(
    {KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTALT, KEY_RIGHTALT}
    | {KEY_CAPSLOCK, KEY_NUMLOCK, KEY_SCROLLLOCK, KEY_LEFTMETA, KEY_RIGHTMETA}
)

PLAIN, SHIFT, ALTGR = 0, 1, 2  # levels 1-3 of xkb


@dataclass(frozen=True, slots=True)
class Layout:
    """One layout: code → (plain, shift, altgr) ("" = nothing), and its dead keys."""

    name: str
    keys: Mapping[int, tuple[str, str, str]]
    dead: frozenset[tuple[int, int]]  # (code, level) that waits for the next key
    has_altgr: bool  # False: Right Alt is just Alt (us)


def _rows(*rows: tuple[tuple[int, ...], str, str, str]) -> dict[int, tuple[str, str, str]]:
    """Zip row strings into the table; a space means "no character at this level"."""
    keys: dict[int, tuple[str, str, str]] = {}
    for codes, plain, shift, altgr in rows:
        altgr = altgr or " " * len(codes)
        if not len(codes) == len(plain) == len(shift) == len(altgr):
            raise ValueError(f"row {codes[0]}: {len(codes)} codes, {plain!r} {shift!r} {altgr!r}")
        for code, *chars in zip(codes, plain, shift, altgr, strict=True):
            keys[code] = (chars[0].strip(), chars[1].strip(), chars[2].strip())
    keys[KEY_SPACE] = (" ", " ", " ")
    return keys


def _layout(
    name: str, keys: dict[int, tuple[str, str, str]], kp_dot: str, dead: set[tuple[int, int]]
) -> Layout:
    keypad = {code: (ch, ch, "") for code, ch in KEYPAD.items()}
    keypad[KEY_KPDOT] = (kp_dot, kp_dot, "")
    has_altgr = any(levels[ALTGR] for code, levels in keys.items() if code != KEY_SPACE)
    return Layout(name, {**keys, **keypad}, frozenset(dead), has_altgr)


US = _layout(
    "us",
    _rows(
        (ROW_E, "`1234567890-=", "~!@#$%^&*()_+", ""),
        (ROW_D, "qwertyuiop[]\\", "QWERTYUIOP{}|", ""),
        (ROW_C, "asdfghjkl;'", 'ASDFGHJKL:"', ""),
        (ROW_B, "<zxcvbnm,./", ">ZXCVBNM<>?", ""),  # LSGT from xkb `pc`
    ),
    kp_dot=".",
    dead=set(),
)

UK = _layout(
    "uk",
    _rows(
        (ROW_E, "`1234567890-=", '¬!"£$%^&*()_+', "| ²³€        "),
        (ROW_D, "qwertyuiop[]#", "QWERTYUIOP{}~", ""),
        (ROW_C, "asdfghjkl;'", "ASDFGHJKL:@", ""),  # Shift+' is @, Shift+2 is " (§1.5)
        (ROW_B, "\\zxcvbnm,./", "|ZXCVBNM<>?", "|          "),
    ),
    kp_dot=".",
    dead=set(),
)

DE = _layout(
    "de",
    _rows(
        (ROW_E, "^1234567890ß´", '°!"§$%&/()=?`', "  ²³   {[]}\\ "),
        (ROW_D, "qwertzuiopü+#", "QWERTZUIOPÜ*'", "@ €        ~ "),
        (ROW_C, "asdfghjklöä", "ASDFGHJKLÖÄ", ""),
        (ROW_B, "<yxcvbnm,.-", ">YXCVBNM;:_", "|      µ   "),
    ),
    kp_dot=",",  # xkb de includes kpdl(comma)
    dead={(41, PLAIN), (13, PLAIN), (13, SHIFT)},  # ^ ´ `
)

FR = _layout(
    "fr",
    _rows(
        (ROW_E, "²&é\"'(-è_çà)=", "~1234567890°+", "  ~#{[|`\\^@]}"),
        (ROW_D, "azertyuiop^$*", "AZERTYUIOP¨£µ", "  €        ¤ "),
        (ROW_C, "qsdfghjklmù", "QSDFGHJKLM%", "@        µ "),
        (ROW_B, "<wxcvbn,;:!", ">WXCVBN?./§", ""),
    ),
    kp_dot=".",
    dead={(26, PLAIN), (26, SHIFT)},  # ^ ¨
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (US, UK, DE, FR)}
