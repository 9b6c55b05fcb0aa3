"""Loop liveness: a loop promises when it will next check in; missing that by far is a wedge."""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Wedge:
    """A loop that broke its promise: `overdue_s` past its promised check-in plus the stall."""

    name: str
    overdue_s: float


class Pulse:
    """One loop's latest promise: "I beat again within `within_s`" (None: parked, no promise).

    `beat` is a single tuple assignment, so a reader thread may call it while the event loop
    reads it: no lock is needed under the GIL.
    """

    __slots__ = ("_clock", "_last", "name")

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._last: tuple[float, float | None] = (clock(), 0.0)

    def beat(self, within_s: float | None = 0.0) -> None:
        """Check in now; the next beat is due within `within_s` (0: after quick work only).

        Pass the bound of the wait about to start (a sleep, a timeout); None when the loop
        waits on the outside world without a bound (an idle link), which can never be late.
        """
        self._last = (self._clock(), within_s)

    def park(self) -> None:
        """The loop stopped on purpose: it owes no further beat."""
        self.beat(None)

    def overdue_s(self, stall_s: float, now: float | None = None) -> float | None:
        """Seconds past `promise + stall_s`, or None while the loop keeps its word."""
        at, within = self._last
        if within is None:
            return None
        late = (self._clock() if now is None else now) - (at + within + stall_s)
        return late if late > 0 else None


def wedged(pulses: Iterable[Pulse], stall_s: float) -> list[Wedge]:
    """Every pulse more than `stall_s` late, most overdue first."""
    found = [Wedge(p.name, late) for p in pulses if (late := p.overdue_s(stall_s)) is not None]
    return sorted(found, key=lambda w: -w.overdue_s)
