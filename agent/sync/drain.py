"""The one drain worker: oldest batch → gzip → POST → apply per-event results (guarantees 2–6)."""

import asyncio
import enum
import gzip
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never

from agent.outbox import Outbox, StoredEvent
from agent.sync.backoff import FullJitterRetryAfter
from agent.sync.client import (
    BatchRejectedError,
    IngestClient,
    MisconfiguredError,
    RetryableError,
    UnauthorizedError,
)
from protocol.wire import BatchResponse

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
        self.progress = asyncio.Event()  # set after every applied batch, for waiters in tests

    async def run(self) -> None:
        """Drain until cancelled."""
        try:
            while True:
                batch = await self._outbox.read_batch(self._max_events, self._max_bytes)
                if not batch:
                    self.state = SyncState.IDLE
                    await self._outbox.wait_for_events(IDLE_POLL_S)
                    continue
                await self._send(batch)
        finally:
            self.state = SyncState.STOPPED

    async def _send(self, batch: Sequence[StoredEvent]) -> None:
        """Deliver `batch` (splitting it if the cloud refuses it whole) and apply the results."""
        try:
            response = await self._post_until_answered(batch)
        except BatchRejectedError as exc:
            await self._on_batch_rejected(batch, exc)
            return
        if len(response.results) != len(batch):
            # A cloud that breaks the one-result-per-event contract must not make us delete.
            self.counters.last_error = (
                f"cloud answered {len(response.results)} results for {len(batch)} events"
            )
            log.error("%s; retrying the batch", self.counters.last_error)
            await asyncio.sleep(self._wait.cap)
            return
        await self._apply(batch, response)

    async def _post_until_answered(self, batch: Sequence[StoredEvent]) -> BatchResponse:
        body = b'{"events":[' + b",".join(row.body for row in batch) + b"]}"
        gzipped = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
        retrying = AsyncRetrying(
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            stop=stop_never,  # guarantee 4: no give-up deadline
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.state = SyncState.SENDING
                return await self._client.post_events(gzipped)
        raise AssertionError("unreachable: stop_never")  # pragma: no cover

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        self.counters.retries += 1
        self.counters.last_error = str(error)
        if isinstance(error, UnauthorizedError):
            self.state = SyncState.UNAUTHORIZED
        elif isinstance(error, MisconfiguredError):
            self.state = SyncState.MISCONFIGURED
        else:
            self.state = SyncState.BACKING_OFF
        sleep = retry_state.upcoming_sleep
        log.warning(
            "sync attempt %d failed (%s); retry in %.1fs", retry_state.attempt_number, error, sleep
        )

    async def _on_batch_rejected(
        self, batch: Sequence[StoredEvent], exc: BatchRejectedError
    ) -> None:
        self.counters.by_status[str(exc.status)] = (
            self.counters.by_status.get(str(exc.status), 0) + 1
        )
        if len(batch) > 1:
            # The cloud refuses the batch whole (too big, or one unreadable row): bisect so the
            # good events still go and only the culprit ends in the dead-letter table.
            half = len(batch) // 2
            log.warning("cloud refused a batch of %d (%s); splitting", len(batch), exc)
            await self._send(batch[:half])
            await self._send(batch[half:])
            return
        log.error("cloud refused event seq=%d: %s; moved to dead letters", batch[0].seq, exc)
        self.counters.rejected += 1
        await self._outbox.dead_letter([(batch[0].seq, f"HTTP {exc.status}: {exc.reason}")])

    async def _apply(self, batch: Sequence[StoredEvent], response: BatchResponse) -> None:
        delivered: list[int] = []
        rejected: list[tuple[int, str]] = []
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
        await self._outbox.ack(delivered)
        self.counters.batches += 1
        self.counters.last_sync_at = time.time()
        self.counters.last_error = None
        self.progress.set()
