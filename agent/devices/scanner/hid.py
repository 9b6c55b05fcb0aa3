"""Sans-IO keyboard-wedge decoder: evdev `input_event` records → typed scans (devices.md §1.5).

Feed raw bytes as read from /dev/input/eventN (records may split across reads) with the
monotonic time; get back one `HidScan` per Enter, KP Enter or Tab, or per inter-key pause.
Keys it cannot decode become U+FFFD, so a layout mismatch is visible instead of silent.
"""

import struct
from dataclasses import dataclass

from agent.devices.scanner import keymaps
from agent.devices.scanner.keymaps import ALTGR, PLAIN, SHIFT, Layout

# struct input_event (linux/input.h): struct timeval {long tv_sec; long tv_usec}, __u16 type,
# __u16 code, __s32 value, in native layout: 24 bytes on 64-bit Linux.
EVENT = struct.Struct("@llHHi")
EV_SYN, EV_KEY = 0x00, 0x01  # linux/input-event-codes.h
SYN_REPORT, SYN_DROPPED = 0, 3  # SYN_DROPPED: the kernel's per-client buffer overflowed
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2  # EV_KEY values

GS = "\x1d"  # FNC1 as scanners transmit it (devices.md §1.3)
UNDECODED = "\ufffd"  # stands in for a key or an Alt code that maps to no character

TERMINATORS: dict[int, str] = {
    keymaps.KEY_ENTER: "enter",
    keymaps.KEY_KPENTER: "enter",
    keymaps.KEY_TAB: "tab",
}
_SHIFTS = frozenset({keymaps.KEY_LEFTSHIFT, keymaps.KEY_RIGHTSHIFT})
_CTRLS = frozenset({keymaps.KEY_LEFTCTRL, keymaps.KEY_RIGHTCTRL})
# Ctrl turns these into C0 controls (Ctrl+] = GS, how many scanners send FNC1, §1.5).
_CONTROLLABLE = "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"


@dataclass(frozen=True, slots=True)
class HidScan:
    """One typed scan: text (GS for FNC1), what ended it, and whether it was cut."""

    text: str
    ended_by: str  # "enter" | "tab" | "timeout" | "flush" | "overlong"
    overlong: bool = False


class HidDecoder:
    """Decode key events under one layout; `feed` bytes, `poll` the clock, get scans back."""

    def __init__(
        self,
        layout: str | Layout,
        gs_substitute: str | None = None,
        inter_key_timeout_s: float = 0.1,
        max_chars: int = 4096,
    ) -> None:
        self.layout = keymaps.LAYOUTS[layout] if isinstance(layout, str) else layout
        if gs_substitute is not None and len(gs_substitute) != 1:
            self._gs_key: int | None = keymaps.FUNCTION_KEYS[gs_substitute]
            self._gs_char: str | None = None
        else:
            self._gs_key, self._gs_char = None, gs_substitute
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self._timeout_s = inter_key_timeout_s
        self._max = max_chars
        self._record = bytearray()  # a record split across reads
        self._held: set[int] = set()
        self._caps = False
        self._dropping = False  # after SYN_DROPPED, until the next SYN_REPORT
        self._chars: list[str] = []
        self._discarding = False  # inside the tail of an overlong scan
        self._dead: str | None = None  # a dead key waiting for the next character
        self._alt_digits = ""  # Alt + keypad digits typed so far
        self._last_key_at: float | None = None  # kernel timestamp of the last key press
        self._last_key_now: float | None = None  # caller's clock at that press
        self._out: list[HidScan] = []
        self.counters: dict[str, int] = dict.fromkeys(
            ("keys", "unknown_keys", "key_repeats", "syn_dropped", "empty", "overlong",
             "inter_key_timeouts"),
            0,
        )  # fmt: skip

    def feed(self, data: bytes, now: float) -> list[HidScan]:
        """Scans completed by `data`; a pause between key timestamps past the timeout ends one."""
        self._out = []
        self._record += data
        usable = len(self._record) - len(self._record) % EVENT.size
        for sec, usec, ev_type, code, value in EVENT.iter_unpack(self._record[:usable]):
            self._event(sec + usec / 1e6, ev_type, code, value, now)
        del self._record[:usable]
        return self._out

    def poll(self, now: float) -> list[HidScan]:
        """End the scan in progress if no key came for the inter-key timeout."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        self.counters["inter_key_timeouts"] += 1
        self._out = []
        self._end("timeout")
        return self._out

    def flush(self) -> list[HidScan]:
        """End everything now (device lost, shutdown); modifiers and partial records are reset."""
        self._out = []
        if self._in_progress():
            self._end("flush")
        self._record.clear()
        self._held.clear()
        self._caps = self._dropping = False
        return self._out

    def deadline(self) -> float | None:
        """Caller's time at which `poll` ends the scan in progress, or None."""
        if self._timeout_s <= 0 or self._last_key_now is None or not self._in_progress():
            return None
        return self._last_key_now + self._timeout_s

    def _event(self, at: float, ev_type: int, code: int, value: int, now: float) -> None:
        if ev_type == EV_SYN:
            if code == SYN_DROPPED:  # events were lost: mark the scan, forget held keys
                self.counters["syn_dropped"] += 1
                self._dropping = True
                self._held.clear()
                self._put(UNDECODED)
            elif code == SYN_REPORT:
                self._dropping = False
            return
        if ev_type != EV_KEY or self._dropping:
            return  # EV_MSC scan codes, LEDs, and the rest of a dropped packet
        if value == KEY_REPEAT:
            # A scanner never holds a key; a repeat means a stalled key-up, and typing it
            # again would duplicate a character (FreeRDP#3229 in §1.5).
            self.counters["key_repeats"] += 1
            return
        if code in keymaps.MODIFIERS:
            self._modifier(code, value == KEY_PRESS)
            return
        if value != KEY_PRESS:
            return
        if self._paused_since(at):
            self.counters["inter_key_timeouts"] += 1
            self._end("timeout")
        self._last_key_at, self._last_key_now = at, now
        self.counters["keys"] += 1
        self._key(code)

    def _modifier(self, code: int, pressed: bool) -> None:
        if code == keymaps.KEY_CAPSLOCK:
            self._caps ^= pressed
        elif pressed:
            self._held.add(code)
        else:
            self._held.discard(code)
            if code in self._alt_keys() and self._alt_digits:
                self._alt_code()

    def _key(self, code: int) -> None:
        if code in TERMINATORS:
            self._end(TERMINATORS[code])
            return
        if code == self._gs_key:
            self._put(GS)
            return
        alt = bool(self._held & self._alt_keys())
        if alt and code in keymaps.KEYPAD_DIGITS:  # Alt+0029 = GS, the Windows way (§1.5)
            self._alt_digits += str(keymaps.KEYPAD_DIGITS[code])
            return
        level = self._level(code)
        char = self.layout.keys.get(code, ("", "", ""))[level]
        if not char or alt:  # unmapped, or an Alt+key shortcut: no text either way
            self._unknown()
            return
        if (code, level) in self.layout.dead:
            if self._dead is not None:  # two dead keys: the first stands for itself
                dead, self._dead = self._dead, None
                self._put(dead)
            self._dead = char
            return
        if self._held & _CTRLS:
            upper = char.upper()
            if len(upper) != 1 or upper not in _CONTROLLABLE:
                self._unknown()
                return
            char = chr(ord(upper) - 0x40)
        self._put(char)

    def _level(self, code: int) -> int:
        if self.layout.has_altgr and keymaps.KEY_RIGHTALT in self._held:
            return ALTGR
        shift = bool(self._held & _SHIFTS)
        plain, shifted, _ = self.layout.keys.get(code, ("", "", ""))
        if self._caps and plain and shifted == plain.upper() != plain:
            shift = not shift  # Caps Lock only affects letter keys
        return SHIFT if shift else PLAIN

    def _alt_keys(self) -> set[int]:
        if self.layout.has_altgr:
            return {keymaps.KEY_LEFTALT}
        return {keymaps.KEY_LEFTALT, keymaps.KEY_RIGHTALT}

    def _alt_code(self) -> None:
        digits, self._alt_digits = self._alt_digits, ""
        number = int(digits)
        if number < 128:
            self._put(chr(number))
        elif number < 256:  # Alt+0nnn is the ANSI code page, Alt+nnn the OEM one
            codec = "cp1252" if digits.startswith("0") else "cp437"
            self._put(bytes([number]).decode(codec, errors="replace"))
        else:
            self._unknown()

    def _unknown(self) -> None:
        self.counters["unknown_keys"] += 1
        self._put(UNDECODED)

    def _put(self, char: str) -> None:
        if self._dead is not None:
            dead, self._dead = self._dead, None
            # Dead key + Space types the accent itself; otherwise both stand as typed:
            # scanners send ASCII, so composing "^a" into "â" would only corrupt data.
            if char == " ":
                char = dead
            else:
                self._put(dead)
        if char == self._gs_char:
            char = GS
        if self._discarding:
            return
        self._chars.append(char)
        if len(self._chars) >= self._max:
            self._out.append(HidScan("".join(self._chars)[: self._max], "overlong", True))
            self.counters["overlong"] += 1
            self._chars.clear()
            self._discarding = True

    def _end(self, ended_by: str) -> None:
        if self._dead is not None:
            dead, self._dead = self._dead, None
            self._put(dead)
        if self._alt_digits:
            self._alt_digits = ""
            self._unknown()
        if self._chars:
            self._out.append(HidScan("".join(self._chars), ended_by))
        elif not self._discarding:
            self.counters["empty"] += 1
        self._chars.clear()
        self._discarding = False
        self._last_key_at = self._last_key_now = None

    def _paused_since(self, at: float) -> bool:
        """True if a scan is in progress and its last key press is older than the timeout."""
        if self._timeout_s <= 0 or self._last_key_at is None or not self._in_progress():
            return False
        return at - self._last_key_at > self._timeout_s

    def _in_progress(self) -> bool:
        return bool(self._chars or self._discarding or self._dead or self._alt_digits)
