"""Live updates: one poller per replica fans storage changes out to every SSE subscriber.

Viewers never query storage themselves to learn that something changed: the hub reads the
change counters once per `poll_s`, and the new events of each store someone is watching with
one indexed query per store, however many browsers watch it.
"""

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cloud.errors import StorageError
from cloud.storage.console import ConsoleStorage, TailEvent

log = logging.getLogger(__name__)

# Per-subscriber queue bound: a browser that stops reading loses its oldest updates (counted),
# never the replica's memory.
QUEUE_MAX = 256
TAIL_BATCH = 100
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class Versions:
    """The (fleet, alerts, events) change counters at one poll."""

    fleet: int
    alerts: int
    events: int

    def as_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {"fleet": self.fleet, "alerts": self.alerts, "events": self.events}


@dataclass(eq=False, slots=True)
class Subscription:
    """One SSE client: versions always, and the tail of `store_id` after `after` if set."""

    store_id: str | None = None
    after: int = 0
    queue: "asyncio.Queue[tuple[str, Any] | None]" = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX)
    )


class LiveHub:
    """Polls storage and feeds subscribers; `close()` ends every subscription."""

    def __init__(self, storage: ConsoleStorage, poll_s: float) -> None:
        self._storage = storage
        self._poll_s = poll_s
        self._subs: set[Subscription] = set()
        self._versions: Versions | None = None
        self._closed = False
        self.counters: Counter[str] = Counter()

    @property
    def subscribers(self) -> int:
        """How many clients are connected."""
        return len(self._subs)

    def subscribe(self, store_id: str | None = None, after: int = 0) -> Subscription:
        """A new subscription; it first receives the current versions, if known."""
        sub = Subscription(store_id, after)
        if self._closed:
            sub.queue.put_nowait(None)
            return sub
        self._subs.add(sub)
        if self._versions is not None:
            sub.queue.put_nowait(("versions", self._versions.as_dict()))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (the client went away)."""
        self._subs.discard(sub)

    async def run(self) -> None:
        """Poll until cancelled, backing off while storage fails."""
        failures = 0
        while True:
            try:
                await self.poll()
                failures = 0
                delay = self._poll_s
            except StorageError as exc:
                failures += 1
                self.counters["poll_failures"] += 1
                delay = min(BACKOFF_CAP_S, self._poll_s * 2**failures)
                log.warning("live poll failed: %s (next in %.1f s)", exc, delay)
            await asyncio.sleep(delay)

    async def poll(self) -> None:
        """One round: push changed versions to all, new events to each store's watchers."""
        versions = Versions(*await self._storage.live_version())
        if versions != self._versions:
            self._versions = versions
            for sub in list(self._subs):
                self._put(sub, ("versions", versions.as_dict()))
        watched: dict[str, list[Subscription]] = {}
        for sub in self._subs:
            if sub.store_id is not None:
                watched.setdefault(sub.store_id, []).append(sub)
        for store_id, subs in watched.items():
            after = min(sub.after for sub in subs)
            events = await self._storage.events_after(store_id, after, TAIL_BATCH)
            for sub in subs:
                self._send_tail(sub, events)

    def close(self) -> None:
        """End every subscription (shutdown): each SSE handler returns."""
        self._closed = True
        for sub in list(self._subs):
            while True:
                try:
                    sub.queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    sub.queue.get_nowait()
        self._subs.clear()

    def _send_tail(self, sub: Subscription, events: list[TailEvent]) -> None:
        for event in events:
            if event.cursor > sub.after:
                self._put(sub, ("tail", event))
                sub.after = event.cursor

    def _put(self, sub: Subscription, item: tuple[str, Any]) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            sub.queue.get_nowait()  # drop the oldest: the next versions message resyncs
            sub.queue.put_nowait(item)
            self.counters["dropped"] += 1
