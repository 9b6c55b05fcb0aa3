"""The one drain worker: oldest batch → gzip → POST → apply per-event results (guarantees 2–6)."""

import asyncio
import contextlib
import enum
import gzip
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never

from agent.liveness import Pulse
from agent.outbox import Outbox, StoredEvent
from agent.sync.backoff import FullJitterRetryAfter
from agent.sync.client import (
    BatchRejectedError,
    BatchVerdicts,
    IngestClient,
    MisconfiguredError,
    RetryableError,
    UnauthorizedError,
)

log = logging.getLogger(__name__)

# How long an idle worker sleeps before looking at the outbox again, should a wake-up be missed.
IDLE_POLL_S = 1.0
# gzip level 1: ~5× smaller JSON at a fraction of level 6's CPU (research/perf.md §5.2).
GZIP_LEVEL = 1


class SyncState(enum.StrEnum):
    """What the drain worker is doing, for status and heartbeats."""

    IDLE = "idle"
    SENDING = "sending"
    BACKING_OFF = "backing_off"
    UNAUTHORIZED = "unauthorized"
    MISCONFIGURED = "misconfigured"
    STOPPED = "stopped"


@dataclass(slots=True)
class SyncCounters:
    """Totals since start, shown by `status` and sent in heartbeats."""

    batches: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    retries: int = 0
    last_error: str | None = None
    last_sync_at: float | None = None
    by_status: dict[str, int] = field(default_factory=dict)


class DrainWorker:
    """Sends the outbox to the cloud, oldest first, forever; rows leave only once answered."""

    def __init__(
        self,
        outbox: Outbox,
        client: IngestClient,
        *,
        max_events: int = 500,
        max_bytes: int = 1024 * 1024,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._wait = FullJitterRetryAfter(backoff_base_s, backoff_cap_s)
        self.state = SyncState.IDLE
        self.counters = SyncCounters()
        # Wall-clock time the cloud first refused our token, until a batch gets through again.
        self.unauthorized_since: float | None = None
        self.progress = asyncio.Event()  # set after every applied batch, for waiters in tests
        # Promises the watchdog holds the loop to: each wait below says how long it may take.
        self.pulse = Pulse("sync")
        self._wake = asyncio.Event()
        # The ack of the last answered batch, committing while the next batch is on the wire.
        self._acking: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Drain until cancelled."""
        prepared: _Prepared | None = None
        try:
            while True:
                self.pulse.beat()
                if prepared is None:
                    # Reading from the oldest again: answered rows must be gone first, or
                    # they would be sent twice.
                    await self._settle_ack()
                    prepared = await self._prepare(after=0)
                    if prepared is None:
                        self.state = SyncState.IDLE
                        self.pulse.beat(IDLE_POLL_S)
                        await self._outbox.wait_for_events(IDLE_POLL_S)
                        continue
                # Read and gzip the next batch while this one is on the wire. Still one
                # request in flight at a time, so events reach the cloud oldest first.
                ahead = asyncio.create_task(self._prepare(after=prepared.batch[-1].seq))
                try:
                    complete = await self._send(prepared.batch, prepared.gzipped)
                except BaseException:
                    ahead.cancel()
                    raise
                if complete:
                    prepared = await ahead
                else:
                    ahead.cancel()
                    prepared = None
        finally:
            if self._acking is not None and not self._acking.done():
                # Finish the answered batch's ack (a few ms) so stopping leaves no rows the
                # cloud already has; if it cannot, they are resent and answered duplicate.
                try:
                    await self._acking
                except Exception:
                    log.exception("ack of the last answered batch failed while stopping")
            self.state = SyncState.STOPPED
            self.pulse.park()

    def wake(self) -> None:
        """Cut the current backoff short (new credentials: the next try may well succeed)."""
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _prepare(self, after: int) -> "_Prepared | None":
        batch = await self._outbox.read_batch(self._max_events, self._max_bytes, after)
        if not batch:
            return None
        return _Prepared(batch, await asyncio.to_thread(_gzip_batch, batch))

    async def _send(self, batch: Sequence[StoredEvent], gzipped: bytes | None = None) -> bool:
        """Deliver `batch` (splitting it if refused whole); False if it must be read again."""
        if gzipped is None:
            gzipped = await asyncio.to_thread(_gzip_batch, batch)
        try:
            response = await self._post_until_answered(gzipped)
        except BatchRejectedError as exc:
            return await self._on_batch_rejected(batch, exc)
        if len(response.results) != len(batch):
            # A cloud that breaks the one-result-per-event contract must not make us delete.
            self.counters.last_error = (
                f"cloud answered {len(response.results)} results for {len(batch)} events"
            )
            log.error("%s; retrying the batch", self.counters.last_error)
            self.pulse.beat(self._wait.cap)
            await asyncio.sleep(self._wait.cap)
            return False
        await self._apply(batch, response)
        return True

    async def _post_until_answered(self, gzipped: bytes) -> BatchVerdicts:
        retrying = AsyncRetrying(
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            stop=stop_never,  # guarantee 4: no give-up deadline
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.state = SyncState.SENDING
                self.pulse.beat(self._client.timeout_s)
                return await self._client.post_events(gzipped)
        raise AssertionError("unreachable: stop_never")  # pragma: no cover

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        self.counters.retries += 1
        self.counters.last_error = str(error)
        if isinstance(error, UnauthorizedError):
            self.state = SyncState.UNAUTHORIZED
            if self.unauthorized_since is None:
                self.unauthorized_since = time.time()
        elif isinstance(error, MisconfiguredError):
            self.state = SyncState.MISCONFIGURED
        else:
            self.state = SyncState.BACKING_OFF
        sleep = retry_state.upcoming_sleep
        self.pulse.beat(sleep)
        log.warning(
            "sync attempt %d failed (%s); retry in %.1fs", retry_state.attempt_number, error, sleep
        )

    async def _on_batch_rejected(
        self, batch: Sequence[StoredEvent], exc: BatchRejectedError
    ) -> bool:
        self.counters.by_status[str(exc.status)] = (
            self.counters.by_status.get(str(exc.status), 0) + 1
        )
        if len(batch) > 1:
            # The cloud refuses the batch whole (too big, or one unreadable row): bisect so the
            # good events still go and only the culprit ends in the dead-letter table.
            half = len(batch) // 2
            log.warning("cloud refused a batch of %d (%s); splitting", len(batch), exc)
            return await self._send(batch[:half]) and await self._send(batch[half:])
        log.error("cloud refused event seq=%d: %s; moved to dead letters", batch[0].seq, exc)
        self.counters.rejected += 1
        await self._outbox.dead_letter([(batch[0].seq, f"HTTP {exc.status}: {exc.reason}")])
        return True

    async def _apply(self, batch: Sequence[StoredEvent], response: BatchVerdicts) -> None:
        delivered: list[int] = []
        rejected: list[tuple[int, str]] = []
        self.pulse.beat()
        for row, result in zip(batch, response.results, strict=True):
            if result.status == "rejected":
                rejected.append((row.seq, result.reason or "rejected without a reason"))
            else:
                delivered.append(row.seq)
                if result.status == "accepted":
                    self.counters.accepted += 1
                else:
                    self.counters.duplicate += 1
        if rejected:
            self.counters.rejected += len(rejected)
            log.error("cloud rejected %d events, first: %s", len(rejected), rejected[0][1])
            await self._outbox.dead_letter(rejected)
        # The ack commits (an fsync) while the next batch is posted: one ack in flight at a
        # time, so rows still leave in order and only after their answer (guarantee 3).
        await self._settle_ack()
        self._acking = asyncio.create_task(self._ack(delivered))
        self.counters.last_sync_at = time.time()
        self.counters.last_error = None
        self.unauthorized_since = None

    async def _settle_ack(self) -> None:
        """Wait for the previous batch's ack; its failure surfaces here."""
        if self._acking is not None:
            acking, self._acking = self._acking, None
            await acking

    async def _ack(self, delivered: list[int]) -> None:
        await self._outbox.ack(delivered)
        self.counters.batches += 1
        self.progress.set()


@dataclass(frozen=True, slots=True)
class _Prepared:
    batch: list[StoredEvent]
    gzipped: bytes


def _gzip_batch(batch: Sequence[StoredEvent]) -> bytes:
    """The POST body: the stored envelopes, unchanged, as one JSON batch, gzipped."""
    return gzip.compress(b'{"events":[' + b",".join(row.body for row in batch) + b"]}", GZIP_LEVEL)
