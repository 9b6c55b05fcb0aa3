"""A serial barcode scanner over a pty, reachable at a stable symlink (devices.md §4.2, §7.2)."""

import errno
import fcntl
import os
import random
import select
import struct
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

# If nobody reads, the pty's buffer fills (~20 KB on Linux); give up on a write after this long.
WRITE_TIMEOUT_S = 2.0
GS = b"\x1d"  # FNC1 as scanners transmit it (devices.md §1.3)


# Time for the kernel to hand bytes written to the master over to the reader's queue.
DRAIN_SETTLE_S = 0.02


class EmulatorError(Exception):
    """The emulated device could not do what was asked (unplugged, or nobody reading)."""


class PtyScanner:
    """A scanner on a pty: `scan` types a code, `unplug`/`replug` emulate the USB cable."""

    def __init__(self, link: Path, *, write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        self.link = Path(link)
        self.write_timeout_s = write_timeout_s
        self._master: int | None = None
        self._slave: int | None = None
        self.device_path = ""
        self.replug()

    @property
    def plugged(self) -> bool:
        """True while the pty exists and the link points at it."""
        return self._master is not None

    def scan(self, text: str | bytes, terminator: bytes = b"\r\n") -> None:
        """Send one code as the scanner would: its bytes, then the configured suffix."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.send_raw(data + terminator)

    def send_raw(self, data: bytes, *, chunk: int = 0, gap_s: float = 0.0) -> None:
        """Write bytes as-is, optionally in `chunk`-byte pieces `gap_s` apart."""
        step = chunk if chunk > 0 else max(1, len(data))
        for start in range(0, len(data), step):
            if start and gap_s:
                time.sleep(gap_s)
            self._write_all(data[start : start + step])

    def pending(self) -> int:
        """Bytes written but not yet read by whoever has the port open."""
        if self._slave is None:
            return 0
        # A master write reaches the slave's read buffer later, from a kernel worker (the tty
        # flip buffer); FIONREAD does not wait for it and can say 0 while the last scan is
        # still in flight. poll() on the slave does: n_tty_poll flushes that pending work
        # first when the buffer looks empty. Without this, close() right after drain() could
        # hang up the line with a scan still in flight, and the reader would never get it.
        select.select([self._slave], [], [], 0)
        raw = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", raw)[0]
        return count

    def drain(self, timeout_s: float = WRITE_TIMEOUT_S) -> bool:
        """Wait until the reader took everything written; False if it did not in time.

        The kernel moves bytes written to the master into the reader's queue asynchronously
        (tty flip buffers), so FIONREAD can read 0 before they arrived: only 0 read twice,
        DRAIN_SETTLE_S apart, counts as drained. Still not an acknowledgement of any frame.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            while self.pending():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            time.sleep(DRAIN_SETTLE_S)
            if not self.pending():
                return True

    def unplug(self) -> None:
        """Pull the cable: the reader sees EIO, the link disappears. Idempotent."""
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self.link.unlink(missing_ok=True)

    def replug(self) -> None:
        """Plug in again: a new pty, the link atomically re-pointed at it."""
        self.unplug()
        self._master, self._slave = os.openpty()
        try:
            # Raw, so the tty layer does not turn CR into LF or echo (devices.md §4.2).
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.device_path = os.ttyname(self._slave)
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(self.device_path, tmp)
            os.replace(tmp, self.link)  # atomic: the agent never sees a missing link mid-swap
        except BaseException:
            self.unplug()
            raise

    def close(self) -> None:
        """Unplug for good."""
        self.unplug()

    def __enter__(self) -> "PtyScanner":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_all(self, data: bytes) -> None:
        deadline = time.monotonic() + self.write_timeout_s
        view = memoryview(data)
        while view:
            if self._master is None:
                raise EmulatorError("scanner is unplugged")
            try:
                view = view[os.write(self._master, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                raise EmulatorError(f"pty write failed: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise EmulatorError(f"nobody is reading {self.link}: {len(view)} bytes not sent")
            select.select([], [self._master], [], min(left, 0.05))


def gtin_with_check_digit(body: str) -> str:
    """Append the GS1 mod-10 check digit (own copy: the emulator must not trust the agent's)."""
    weights = (3, 1)
    total = sum(int(d) * weights[i % 2] for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def realistic_scans(rng: random.Random, *, aim: bool = True) -> Iterator[bytes]:
    """Endless mix of what a store scanner sends: EAN-13, EAN-8, GS1-128, QR URLs, garbage."""
    makers = (_ean13, _ean13, _ean13, _ean8, _gs1_128, _qr_url, _garbage)
    while True:
        prefix, data = rng.choice(makers)(rng)
        yield (prefix if aim else b"") + data


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _ean13(rng: random.Random) -> tuple[bytes, bytes]:
    return b"]E0", gtin_with_check_digit(
        rng.choice(["400", "590", "690"]) + _digits(rng, 9)
    ).encode()


def _ean8(rng: random.Random) -> tuple[bytes, bytes]:
    return b"]E4", gtin_with_check_digit(_digits(rng, 7)).encode()


def _gs1_128(rng: random.Random) -> tuple[bytes, bytes]:
    gtin = gtin_with_check_digit("0" + _digits(rng, 12))
    expiry = f"{rng.randint(25, 35):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    lot = "".join(rng.choice("ABCDEFGH0123456789") for _ in range(rng.randint(3, 10)))
    return b"]C1", f"01{gtin}17{expiry}10{lot}".encode() + GS + f"21{_digits(rng, 6)}".encode()


def _qr_url(rng: random.Random) -> tuple[bytes, bytes]:
    code = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
    return b"]Q1", f"https://shop.example.com/c/{code}".encode()


def _garbage(rng: random.Random) -> tuple[bytes, bytes]:
    # Noise from a bad cable or a wrong baud rate; CR/LF excluded so it stays one frame.
    noise = bytes(rng.choice([b for b in range(256) if b not in (0x0A, 0x0D)]) for _ in range(8))
    return b"", noise
