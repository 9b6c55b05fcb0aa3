"""Admission control: bounds on concurrent work that refuse instead of queueing."""

from collections.abc import Iterator
from contextlib import contextmanager

from cloud.errors import Overloaded


class Gate:
    """Admits at most `limit` holders and `limit_bytes` of their bodies at once.

    Loop-only, so plain ints need no lock. Counting bytes as well as requests lets thousands
    of one-event batches through at once while still bounding memory by a few large ones.
    """

    def __init__(self, limit: int, what: str = "batches", limit_bytes: int | None = None) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.what = what
        self.in_flight = 0
        self.bytes_in_flight = 0

    @contextmanager
    def admit(self, size: int = 0) -> Iterator[None]:
        """Hold one slot (and `size` bytes) for the block, or raise Overloaded."""
        if self.in_flight >= self.limit:
            raise Overloaded(f"busy: {self.limit} {self.what} in flight, retry shortly")
        # One request alone may exceed the byte budget, but only when nothing else is in flight.
        over = self.limit_bytes is not None and self.bytes_in_flight + size > self.limit_bytes
        if over and self.bytes_in_flight:
            raise Overloaded(f"busy: {self.bytes_in_flight} bytes in flight, retry shortly")
        self.in_flight += 1
        self.bytes_in_flight += size
        try:
            yield
        finally:
            self.in_flight -= 1
            self.bytes_in_flight -= size
