"""Feeds the systemd watchdog only while every loop keeps its promise, and keeps STATUS fresh."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from agent.liveness import Pulse, Wedge, wedged
from agent.notify import Notifier

log = logging.getLogger(__name__)

# Without a systemd watchdog the checks (and STATUS updates) still run this often, so the
# status page and the log say which loop is stuck.
CHECK_INTERVAL_S = 5.0
# The summary reads the outbox; a wedged outbox must not wedge the watchdog with it.
SUMMARY_TIMEOUT_S = 2.0


class Watchdog:
    """Every interval: find wedged loops; if none, ping WATCHDOG=1, else say who and stop."""

    def __init__(
        self,
        notifier: Notifier,
        pulses: Callable[[], Iterable[Pulse]],
        summary: Callable[[], Awaitable[str]],
        stall_s: float,
    ) -> None:
        self._notifier = notifier
        self._pulses = pulses
        self._summary = summary
        self._stall_s = stall_s
        self.interval_s = min(notifier.watchdog_interval_s or CHECK_INTERVAL_S, CHECK_INTERVAL_S)
        self.wedges: list[Wedge] = []
        self.pings = 0
        self._line = "starting"

    async def run(self) -> None:
        """Check, ping or withhold, update STATUS; until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> list[Wedge]:
        """One round: returns the wedged loops (empty when the watchdog was fed)."""
        found = wedged(self._pulses(), self._stall_s)
        if found != [] and [w.name for w in found] != [w.name for w in self.wedges]:
            log.error(
                "wedged, withholding the watchdog: %s",
                ", ".join(f"{w.name} ({w.overdue_s:.0f}s late)" for w in found),
            )
        elif not found and self.wedges:
            log.warning("loops recovered: %s", ", ".join(w.name for w in self.wedges))
        self.wedges = found
        if not found:
            if self._notifier.watchdog_interval_s is not None and self._notifier.watchdog():
                self.pings += 1
            try:
                async with asyncio.timeout(SUMMARY_TIMEOUT_S):
                    self._line = await self._summary()
            except TimeoutError:
                pass  # keep the last summary; the pulse of whatever is slow will tell
            self._notifier.status(self._line)
        else:
            names = ", ".join(w.name for w in found)
            self._notifier.status(f"WEDGED: {names}; watchdog withheld so systemd restarts us")
        return found
