"""Admission control: a bound on concurrent work that refuses instead of queueing."""

from collections.abc import Iterator
from contextlib import contextmanager

from cloud.errors import Overloaded


class Gate:
    """Admits at most `limit` holders at once; loop-only, so a plain int needs no lock."""

    def __init__(self, limit: int, what: str = "batches") -> None:
        self.limit = limit
        self.what = what
        self.in_flight = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one slot for the block, or raise Overloaded when all are taken."""
        if self.in_flight >= self.limit:
            raise Overloaded(f"busy: {self.limit} {self.what} in flight, retry shortly")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
