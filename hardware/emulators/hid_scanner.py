"""A USB keyboard-wedge scanner: real `input_event` records, typed into a FIFO (§1.5).

There is no /dev/uinput here, so the "device node" is a FIFO at a stable path: the agent
reads exactly the bytes the kernel would hand it from /dev/input/eventN; only the EVIOCGRAB
ioctl differs (a FIFO answers ENOTTY). The keyboard tables are the firmware's own, written
from the keyboards rather than taken from the agent, so a wrong table on either side shows.
"""

import errno
import fcntl
import os
import select
import stat
import struct
import termios
import time
from pathlib import Path
from types import TracebackType

# struct input_event (linux/input.h): timeval, u16 type, u16 code, s32 value (24 bytes).
EVENT = struct.Struct("@llHHi")
EV_SYN, EV_KEY, EV_MSC = 0x00, 0x01, 0x04  # linux/input-event-codes.h
SYN_REPORT, SYN_DROPPED, MSC_SCAN = 0, 3, 4
KEY_TAB, KEY_ENTER, KEY_LEFTCTRL, KEY_LEFTSHIFT = 15, 28, 29, 42
KEY_SPACE, KEY_KPENTER, KEY_RIGHTALT = 57, 96, 100
FUNCTION_KEYS = {f"F{n}": 58 + n for n in range(1, 11)} | {"F11": 87, "F12": 88}
TERMINATOR_KEYS = {"enter": KEY_ENTER, "kpenter": KEY_KPENTER, "tab": KEY_TAB}
WRITE_TIMEOUT_S = 2.0

_E = (41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)  # ` 1 … 0 - =  on a US board
_D = (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 43)  # q … ] \
_C = (30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)  # a … '
_B = (86, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53)  # the ISO extra key, z … /
# Per country, per row: unshifted, shifted, AltGr ("·" = nothing there).
_BOARDS: dict[str, tuple[tuple[tuple[int, ...], str, str, str], ...]] = {
    "us": (
        (_E, "`1234567890-=", "~!@#$%^&*()_+", "·" * 13),
        (_D, "qwertyuiop[]\\", "QWERTYUIOP{}|", "·" * 13),
        (_C, "asdfghjkl;'", 'ASDFGHJKL:"', "·" * 11),
        (_B, "·zxcvbnm,./", "·ZXCVBNM<>?", "·" * 11),
    ),
    "uk": (
        (_E, "`1234567890-=", '¬!"£$%^&*()_+', "|···€········"),
        (_D, "qwertyuiop[]#", "QWERTYUIOP{}~", "·" * 13),
        (_C, "asdfghjkl;'", "ASDFGHJKL:@", "·" * 11),
        (_B, "\\zxcvbnm,./", "|ZXCVBNM<>?", "·" * 11),
    ),
    "de": (
        (_E, "^1234567890ß´", '°!"§$%&/()=?`', "·······{[]}\\·"),
        (_D, "qwertzuiopü+#", "QWERTZUIOPÜ*'", "@·€········~·"),
        (_C, "asdfghjklöä", "ASDFGHJKLÖÄ", "·" * 11),
        (_B, "<yxcvbnm,.-", ">YXCVBNM;:_", "|······µ···"),
    ),
    "fr": (
        (_E, "²&é\"'(-è_çà)=", "·1234567890°+", "··~#{[|`\\^@]}"),
        (_D, "azertyuiop^$*", "AZERTYUIOP¨£µ", "··€··········"),
        (_C, "qsdfghjklmù", "QSDFGHJKLM%", "@··········"),
        (_B, "<wxcvbn,;:!", ">WXCVBN?./§", "·" * 11),
    ),
}
# Accent keys (code, level) that wait for the next key; the firmware follows them with Space.
_DEAD = {"de": {(41, 0), (13, 0), (13, 1)}, "fr": {(26, 0), (26, 1)}}
_PLAIN, _SHIFT, _ALTGR = 0, 1, 2
_MODS = {_PLAIN: (), _SHIFT: (KEY_LEFTSHIFT,), _ALTGR: (KEY_RIGHTALT,)}


class HidEmulatorError(Exception):
    """The emulated scanner cannot type this, or nobody reads the FIFO."""


def keyboard(layout: str) -> dict[str, tuple[int, int]]:
    """Character → (key code, level 0 plain / 1 shift / 2 AltGr) on that country's board."""
    keys: dict[str, tuple[int, int]] = {" ": (KEY_SPACE, _PLAIN)}
    for codes, *levels in _BOARDS[layout]:
        for level, chars in enumerate(levels):
            for code, char in zip(codes, chars, strict=True):
                if char != "·":
                    keys.setdefault(char, (code, level))
    return keys


class HidScannerEmulator:
    """A wedge scanner on a FIFO at `path`: `scan` types text, `unplug`/`replug` the cable."""

    def __init__(
        self, path: Path, layout: str = "us", *, gs: str = "ctrl", key_gap_s: float = 0.002
    ) -> None:
        self.path = Path(path)
        self.layout = layout
        self.gs = gs  # "ctrl" (Ctrl+]), "F1".."F12", or the substitute character
        self.key_gap_s = key_gap_s
        self._keys = keyboard(layout)
        self._fd: int | None = None
        self.replug()

    def records(self, text: str, terminator: str | None = "enter") -> bytes:
        """The input_event bytes the kernel would deliver for `text` typed, then the suffix."""
        out = bytearray()
        clock = [time.time()]
        for char in text:
            for codes in self._strokes(char):
                out += self._stroke(codes, clock)
        if terminator is not None:
            out += self._stroke((TERMINATOR_KEYS[terminator],), clock)
        return bytes(out)

    def scan(self, text: str, terminator: str | None = "enter", *, chunk: int = 0) -> None:
        """Type one code and its suffix, written in `chunk`-byte pieces (0: one write)."""
        self.send_raw(self.records(text, terminator), chunk=chunk)

    def send_raw(self, data: bytes, *, chunk: int = 0, gap_s: float = 0.0) -> None:
        """Write bytes as-is, optionally in pieces `gap_s` apart (records may split)."""
        step = chunk if chunk > 0 else max(1, len(data))
        for start in range(0, len(data), step):
            if start and gap_s:
                time.sleep(gap_s)
            self._write_all(data[start : start + step])

    def overflow(self) -> None:
        """What the kernel sends when this reader's evdev buffer overflowed: SYN_DROPPED."""
        sec, usec = divmod(round(time.time() * 1e6), 1_000_000)
        self.send_raw(EVENT.pack(sec, usec, EV_SYN, SYN_DROPPED, 0))

    def pending(self) -> int:
        """Bytes typed but not yet read by whoever has the FIFO open."""
        if self._fd is None:
            return 0
        raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", raw)[0]
        return count

    def drain(self, timeout_s: float = WRITE_TIMEOUT_S) -> bool:
        """Wait until the reader took everything typed; False if it did not in time."""
        deadline = time.monotonic() + timeout_s
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def unplug(self) -> None:
        """Pull the cable: the reader sees end of stream, the path disappears. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    def replug(self) -> None:
        """Plug in again: a fresh FIFO at the same path."""
        self.unplug()
        os.mkfifo(self.path, 0o600)
        # O_RDWR never blocks on a FIFO and keeps it open while the agent reconnects.
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        assert stat.S_ISFIFO(os.fstat(self._fd).st_mode)

    def close(self) -> None:
        """Unplug for good."""
        self.unplug()

    def __enter__(self) -> "HidScannerEmulator":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _strokes(self, char: str) -> list[tuple[int, ...]]:
        """Key chords (modifiers first) that type `char` on this board."""
        if char == "\x1d":
            return self._gs_strokes()
        if char not in self._keys:
            raise HidEmulatorError(f"{char!r} cannot be typed on a {self.layout} keyboard")
        code, level = self._keys[char]
        chord = (*_MODS[level], code)
        if (code, level) in _DEAD.get(self.layout, set()):
            return [chord, (KEY_SPACE,)]  # dead key + Space types the accent itself
        return [chord]

    def _gs_strokes(self) -> list[tuple[int, ...]]:
        if self.gs == "ctrl":  # Ctrl+] wherever "]" is on this board
            code, level = self._keys["]"]
            return [(KEY_LEFTCTRL, *_MODS[level], code)]
        if self.gs in FUNCTION_KEYS:
            return [(FUNCTION_KEYS[self.gs],)]
        return self._strokes(self.gs)

    def _stroke(self, chord: tuple[int, ...], clock: list[float]) -> bytes:
        """One HID report pressing `chord`, one releasing it, each closed by SYN_REPORT."""
        out = bytearray()
        for value, codes in ((1, chord), (0, tuple(reversed(chord)))):
            sec, usec = divmod(round(clock[0] * 1e6), 1_000_000)
            for code in codes:
                # MSC_SCAN carries the HID usage on real keyboards; agents ignore it.
                out += EVENT.pack(sec, usec, EV_MSC, MSC_SCAN, 0x70000 + code)
                out += EVENT.pack(sec, usec, EV_KEY, code, value)
            out += EVENT.pack(sec, usec, EV_SYN, SYN_REPORT, 0)
            clock[0] += self.key_gap_s
        return bytes(out)

    def _write_all(self, data: bytes) -> None:
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        view = memoryview(data)
        while view:
            if self._fd is None:
                raise HidEmulatorError("scanner is unplugged")
            try:
                view = view[os.write(self._fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                raise HidEmulatorError(f"FIFO write failed: {exc}") from exc
            if time.monotonic() >= deadline:
                raise HidEmulatorError(f"nobody is reading {self.path}: {len(view)} bytes left")
            select.select([], [self._fd], [], 0.05)
