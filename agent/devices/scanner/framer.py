"""Sans-IO scanner deframer: terminators plus an inter-character idle timeout (devices.md §1.1)."""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One scan as received; `overlong` frames were cut to the framer's max_frame_bytes."""

    raw: bytes
    overlong: bool = False


class ScanFramer:
    """Split a byte stream into frames; feed bytes and poll the clock, get frames back."""

    def __init__(
        self, terminators: Sequence[bytes], idle_timeout_s: float, max_frame_bytes: int
    ) -> None:
        if any(not t for t in terminators):
            raise ValueError("terminators must not be empty")
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        # Longest first, so a tie at one position picks "\r\n" over "\r".
        self._terms = sorted(set(terminators), key=len, reverse=True)
        self._longest = len(self._terms[0]) if self._terms else 0
        self._idle_s = idle_timeout_s
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._scanned = 0  # no terminator starts before this index of _buf
        self._discarding = False  # inside the tail of an overlong frame
        self._last_byte_at: float | None = None
        self.counters: dict[str, int] = {"empty": 0, "overlong": 0, "idle_flushed": 0}

    def feed(self, data: bytes, now: float) -> list[Frame]:
        """Frames completed by `data` (a partial frame that timed out before it comes first)."""
        frames = self.poll(now)
        if data:
            self._buf += data
            self._last_byte_at = now
            self._split(frames, final=False)
        return frames

    def poll(self, now: float) -> list[Frame]:
        """Flush the partial frame if the line has been idle past the timeout."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        self.counters["idle_flushed"] += 1
        return self.flush()

    def flush(self) -> list[Frame]:
        """End the current frame now (idle timeout, unplug, shutdown): nothing stays buffered."""
        frames: list[Frame] = []
        self._split(frames, final=True)
        if self._buf and not self._discarding:
            self._emit(frames, bytes(self._buf))
        self._buf.clear()
        self._scanned = 0
        self._discarding = False
        self._last_byte_at = None
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress (bounded by ~max_frame_bytes)."""
        return len(self._buf)

    def deadline(self) -> float | None:
        """Monotonic time at which `poll` will flush, or None when nothing is pending."""
        if self._idle_s <= 0 or self._last_byte_at is None:
            return None
        if not self._buf and not self._discarding:
            return None
        return self._last_byte_at + self._idle_s

    def _split(self, frames: list[Frame], *, final: bool) -> None:
        while True:
            found = self._find(final)
            if found is None:
                break
            start, length = found
            if not self._discarding:
                self._emit(frames, bytes(self._buf[:start]))
            self._discarding = False
            del self._buf[: start + length]
            self._scanned = 0
        if not final:
            self._bound(frames)

    def _find(self, final: bool) -> tuple[int, int] | None:
        """(index, length) of the terminator ending the current frame, or None to wait."""
        buf = self._buf
        best: tuple[int, int] | None = None
        for term in self._terms:
            index = buf.find(term, self._scanned)
            if index != -1 and (best is None or index < best[0]):
                best = (index, len(term))
        if not final:
            # A proper prefix of a longer terminator at the end ("\r" of "\r\n") could still
            # become an earlier or longer match: wait for the next byte or the idle timeout.
            pending = self._pending_prefix_start()
            if pending is not None and (best is None or pending <= best[0]):
                self._scanned = max(self._scanned, min(pending, len(buf)))
                return None
        if best is None:
            self._scanned = max(0, len(buf) - self._longest + 1)
        return best

    def _pending_prefix_start(self) -> int | None:
        buf, earliest = self._buf, None
        for term in self._terms:
            for size in range(min(len(term) - 1, len(buf)), 0, -1):
                if buf.endswith(term[:size]):
                    start = len(buf) - size
                    earliest = start if earliest is None else min(earliest, start)
                    break
        return earliest

    def _bound(self, frames: list[Frame]) -> None:
        """Keep memory at ~max_frame_bytes: cut an overlong frame, drop its tail as it comes."""
        keep_tail = max(0, self._longest - 1)  # bytes that may start a terminator
        if self._discarding:
            excess = len(self._buf) - keep_tail
        else:
            pending = self._pending_prefix_start()
            content = len(self._buf) if pending is None else pending
            if content <= self._max:
                return
            frames.append(Frame(bytes(self._buf[: self._max]), overlong=True))
            self.counters["overlong"] += 1
            self._discarding = True
            excess = len(self._buf) - keep_tail
        if excess > 0:
            del self._buf[:excess]
            self._scanned = 0

    def _emit(self, frames: list[Frame], raw: bytes) -> None:
        if not raw:
            self.counters["empty"] += 1
        elif len(raw) > self._max:
            frames.append(Frame(raw[: self._max], overlong=True))
            self.counters["overlong"] += 1
        else:
            frames.append(Frame(raw))
