"""UUIDv7 (RFC 9562 §5.7): time-ordered ids made at capture, monotonic within one process."""

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_seq = 0
# Event ids need uniqueness, not secrecy: a PRNG seeded from the OS is ~10× cheaper than a
# urandom syscall per id. Reseeded in forked children so parent and child never share a stream.
_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def uuid7_int(now_ns: int | None = None) -> int:
    """A new UUIDv7 as a 128-bit integer."""
    global _last_ms, _last_seq
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        rand = _rng.getrandbits(74)
        if ms <= _last_ms:
            # Same (or earlier, after a clock step back) millisecond: keep order with the
            # 12-bit rand_a counter (RFC 9562 §6.2 method 1), borrowing a ms on overflow.
            ms = _last_ms
            _last_seq += 1
            if _last_seq > 0xFFF:
                ms += 1
                _last_seq = 0
        else:
            _last_seq = rand >> 64  # random 10-bit start leaves headroom for the counter
        _last_ms = ms
        seq = _last_seq
    rand_b = rand & ((1 << 62) - 1)
    return (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """A new UUIDv7; ids from one process sort in creation order."""
    return uuid.UUID(int=uuid7_int(now_ns))


def uuid7_str(now_ns: int | None = None) -> str:
    """A new UUIDv7 in canonical 8-4-4-4-12 form, without building a UUID object."""
    h = f"{uuid7_int(now_ns):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: uuid.UUID) -> int:
    """Unix milliseconds encoded in a UUIDv7."""
    return value.int >> 80
