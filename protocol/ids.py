"""UUIDv7 (RFC 9562 §5.7): time-ordered ids made at capture, monotonic within one process."""

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_seq = 0


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """Return a new UUIDv7; ids from one process sort in creation order."""
    global _last_ms, _last_seq
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    with _lock:
        if ms <= _last_ms:
            # Same (or earlier, after a clock step back) millisecond: keep order with the
            # 12-bit rand_a counter (RFC 9562 §6.2 method 1), borrowing a ms on overflow.
            ms = _last_ms
            _last_seq += 1
            if _last_seq > 0xFFF:
                ms += 1
                _last_seq = 0
        else:
            _last_seq = (rand >> 64) & 0x3FF  # random start, headroom for the counter
        _last_ms = ms
        seq = _last_seq
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int:
    """Unix milliseconds encoded in a UUIDv7."""
    return value.int >> 80
