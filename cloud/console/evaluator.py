"""The background evaluator: roll-up and alert rules, run by whichever replica holds the lease.

States (one method changes them): STANDBY while another replica holds the lease, LEADING
while this one ticks, FAILING while storage errors back it off. The work itself is safe to
run on several replicas at once (cloud/storage/console.py); the lease only avoids doing it
twice.
"""

import asyncio
import logging
import os
import random
import secrets
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cloud.console.settings import ConsoleSettings
from cloud.errors import StorageError
from cloud.storage.console import AlertChanges, ConsoleStorage

log = logging.getLogger(__name__)

LEASE_NAME = "console-evaluator"
# Events folded per transaction and per tick: a fleet catching up after an outage is
# counted over several ticks instead of one long write lock.
EVENTS_PER_CHUNK = 5000
CHUNKS_PER_TICK = 20
PRUNE_EVERY_S = 3600.0
# Storage failures: exponential backoff with full jitter, capped (DESIGN.md guarantee 4).
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class EvaluatorState(StrEnum):
    """Where the evaluator is."""

    STANDBY = "standby"
    LEADING = "leading"
    FAILING = "failing"


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did; `leading` False means another replica holds the lease."""

    leading: bool
    stores_refreshed: int = 0
    events_counted: int = 0
    alerts: AlertChanges = field(default_factory=AlertChanges)


def new_holder() -> str:
    """A lease holder id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class AlertEvaluator:
    """Ticks every `settings.evaluate_every_s` until cancelled; `tick()` runs one on demand."""

    def __init__(
        self, storage: ConsoleStorage, settings: ConsoleSettings, holder: str | None = None
    ) -> None:
        self._storage = storage
        self._settings = settings
        self.holder = holder or new_holder()
        self.state = EvaluatorState.STANDBY
        self.counters: Counter[str] = Counter()
        self.last_error: str | None = None
        self._failures = 0
        self._pruned_at: datetime | None = None
        self._rng = random.Random()

    async def run(self) -> None:
        """Tick forever; storage errors back off, anything else is logged and retried."""
        try:
            while True:
                delay = self._settings.evaluate_every_s
                try:
                    await self.tick()
                except StorageError as exc:
                    delay = self._fail(exc)
                except Exception as exc:  # a bug in one tick must not end alerting for good
                    log.exception("console evaluator tick failed")
                    delay = self._fail(exc)
                await asyncio.sleep(delay)
        finally:
            await self._release()

    async def tick(self, now: datetime | None = None) -> TickReport:
        """One round: take the lease, refresh the roll-up, count events, evaluate rules."""
        now = now or datetime.now(UTC)
        if not await self._storage.acquire_lease(
            LEASE_NAME, self.holder, now, self._settings.lease_ttl_s
        ):
            self._set_state(EvaluatorState.STANDBY)
            self._failures = 0
            return TickReport(leading=False)
        self._set_state(EvaluatorState.LEADING)
        refreshed = await self._storage.refresh_fleet(now)
        counted = 0
        for _ in range(CHUNKS_PER_TICK):
            taken = await self._storage.aggregate_events(now, EVENTS_PER_CHUNK)
            counted += taken
            if taken < EVENTS_PER_CHUNK:
                break
        changes = await self._storage.evaluate_alerts(self._settings.thresholds, now)
        if self._pruned_at is None or (now - self._pruned_at).total_seconds() >= PRUNE_EVERY_S:
            await self._storage.prune(now - timedelta(seconds=self._settings.retention_s), now)
            self._pruned_at = now
        self._failures = 0
        self.last_error = None
        self.counters["ticks"] += 1
        self.counters["alerts_opened"] += changes.opened
        self.counters["alerts_resolved"] += changes.resolved
        return TickReport(True, refreshed, counted, changes)

    def _fail(self, exc: Exception) -> float:
        self._set_state(EvaluatorState.FAILING)
        self.last_error = str(exc)
        self.counters["failures"] += 1
        self._failures += 1
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self._failures, 16))
        log.warning("console evaluator: %s (retry within %.1f s)", exc, ceiling)
        return self._rng.uniform(0, ceiling)

    def _set_state(self, state: EvaluatorState) -> None:
        if state is not self.state:
            log.info("console evaluator %s: %s -> %s", self.holder, self.state, state)
            self.state = state

    async def _release(self) -> None:
        # Shutting down: hand the lease over now rather than after its TTL.
        if self.state is EvaluatorState.LEADING:
            try:
                await self._storage.release_lease(LEASE_NAME, self.holder)
            except StorageError:
                log.warning("console evaluator: could not release the lease")
            self.state = EvaluatorState.STANDBY
