"""The durable outbox: events are committed before capture returns (DESIGN.md guarantee 1)."""

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from agent.devices.base import Payload
from agent.errors import OutboxClosed, OutboxError
from agent.outbox.quarantine import Quarantine, history, is_corruption, quarantine
from agent.outbox.quarantine import check as check_outbox
from agent.outbox.records import (
    AppendResult,
    Guard,
    Identity,
    OutboxStats,
    PendingEvent,
    StoredEvent,
)
from agent.outbox.store import OutboxStore
from agent.outbox.thread import OutboxReader, OutboxThread
from protocol.constants import SCHEMA_VERSION
from protocol.events import KIND_FOR_PAYLOAD
from protocol.ids import uuid7_str

log = logging.getLogger(__name__)

_StoreFn = Callable[[OutboxStore], Any]
# A quarantine is reported in heartbeats and on the status page for a week.
ALERT_TTL_S = 7 * 24 * 3600.0
MAX_ALERTS = 10
_T = TypeVar("_T")
MAX_KEY_LEN = 200  # idempotency keys are short names ("print:<job_id>"), not payloads


class Outbox:
    """Async face of the outbox; all SQLite work happens on its writer thread."""

    def __init__(self, thread: OutboxThread, path: Path, identity: Identity) -> None:
        self._thread = thread
        self._reader = OutboxReader(path)
        self._identity = identity
        self._checked_devices: set[str] = set()
        self.path = path
        self._new_events = asyncio.Event()
        self._closed = False
        # Outbox files quarantined as corrupt (on open or while running), oldest first.
        self.quarantines: list[Quarantine] = []

    @classmethod
    async def open(
        cls,
        path: Path,
        identity: Identity,
        *,
        max_bytes: int = 2 * 1024**3,
        synchronous: str = "FULL",
    ) -> "Outbox":
        """Open (creating and migrating) the outbox at `path`."""
        loop = asyncio.get_running_loop()
        check_id(identity.agent_id, "agent_id")
        check_id(identity.store_id, "store_id")
        try:
            # A damaged file is moved aside and salvaged, never opened as is (quarantine.py).
            damage = await asyncio.to_thread(check_outbox, path)
            if damage is not None:
                await asyncio.to_thread(quarantine, path, damage)
            store = await asyncio.to_thread(OutboxStore, path, identity, max_bytes, synchronous)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        past = await asyncio.to_thread(history, path.parent)
        box: Outbox
        thread = OutboxThread(
            store,
            loop,
            on_commit=lambda: box._new_events.set(),
            on_quarantine=lambda record: box.quarantines.append(record),
        )
        box = cls(thread, path, identity)
        box.quarantines = past
        return box

    def alerts(self, now: float | None = None) -> list[str]:
        """What an operator must know about the outbox now: recent quarantines, a full disk."""
        now = time.time() if now is None else now
        out = [q.alert() for q in self.quarantines if now - q.at < ALERT_TTL_S]
        full_since = self._thread.disk_full_since
        if full_since is not None:
            out.append(
                f"outbox disk full for {now - full_since:.0f}s: capture waits, "
                "devices are not acknowledged until there is space"
            )
        return out[-MAX_ALERTS:]

    async def append(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        guard: Guard | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Commit one event; returns once it is durable (or dropped by the cap or its guard).

        With `idempotency_key`, a key captured before (within CAPTURE_KEY_RETENTION_S) makes
        this a no-op returning the earlier event's seq with `duplicate=True`: no new event_id,
        no seq used. The key commits in the same transaction as the event.
        """
        if self._closed:
            raise OutboxClosed("outbox is closed")
        if device_id not in self._checked_devices:
            self._checked_devices.add(check_id(device_id, "device_id"))
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_LEN:
            raise OutboxError(f"idempotency_key must be 1–{MAX_KEY_LEN} characters")
        event = encode_pending(
            self._identity,
            device_id,
            payload,
            occurred_at or datetime.now(UTC),
            idempotency_key,
            guard,
        )
        result: AppendResult = await self._thread.append(event)
        return result

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """EventSink for drivers: `append`, ignoring the outcome (drops are counted)."""
        await self.append(device_id, payload, occurred_at, idempotency_key=idempotency_key)

    async def read_batch(
        self, max_events: int, max_bytes: int, after: int = 0
    ) -> list[StoredEvent]:
        """The oldest unsynced events with seq > `after`, in seq order (committed ones only)."""
        if self._closed:
            raise OutboxClosed("outbox is closed")
        try:
            return await self._reader.read_batch(max_events, max_bytes, after)
        except sqlite3.Error as exc:
            if not is_corruption(exc):
                raise OutboxError(f"cannot read the outbox: {exc}") from exc
        # The reader found damage: read once more on the writer, whose recovery quarantines
        # the file and answers from the fresh one (the reader then follows it there).
        batch: list[StoredEvent] = await self._call(
            lambda store: store.read_batch(max_events, max_bytes, after)
        )
        return batch

    async def ack(self, seqs: Sequence[int]) -> None:
        """Delete events the cloud has (accepted or duplicate), with the next group commit."""
        if self._closed:
            raise OutboxClosed("outbox is closed")
        await self._thread.ack(list(seqs))

    async def dead_letter(self, rejected: Sequence[tuple[int, str]]) -> None:
        """Move events the cloud rejected, with reasons, to the dead-letter table."""
        rejected = list(rejected)
        await self._call(lambda store: store.dead_letter(rejected))

    async def query(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `fn(connection)` on the writer thread, in order with appends."""
        result: _T = await self._call(lambda store: fn(store.conn))
        return result

    async def count_loss(self, reason: str, count: int = 1) -> None:
        """Persist a loss counted before the outbox (so heartbeats report it)."""
        await self._call(lambda store: store.count_loss(reason, count))

    async def stats(self) -> OutboxStats:
        """Backlog, dead letters and losses as of now."""
        stats: OutboxStats = await self._call(lambda store: store.stats())
        return stats

    async def wait_for_events(self, timeout: float) -> None:
        """Return when something was committed since the last call, or after `timeout`."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that lands as the wait completes, leaving the drain worker running after cancel().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._new_events.wait()
        self._new_events.clear()

    async def close(self) -> None:
        """Let queued work finish, then close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._reader.close)
        await asyncio.to_thread(self._thread.stop)

    async def __aenter__(self) -> "Outbox":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, fn: _StoreFn) -> Any:
        if self._closed:
            raise OutboxClosed("outbox is closed")
        return await self._thread.call(fn)


def oldest_age_s(stats: OutboxStats, now: float | None = None) -> float | None:
    """Age in seconds of the oldest unsynced event, or None when the backlog is empty."""
    if stats.oldest_created_at is None:
        return None
    return max(0.0, (now if now is not None else time.time()) - stats.oldest_created_at)


# The envelope is assembled here rather than by pydantic (3× cheaper, research/perf.md): every
# field but the payload is ours, ids are checked against the protocol's Id pattern once, and a
# parity test holds these bytes to what EVENT_ADAPTER validates and pydantic would write.
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
# The envelope's constant parts are made once per identity and per (device, kind): capture
# runs on the event loop, and each microsecond there is one the writer thread waits for the
# GIL (docs/BENCHMARKS.md "Profiling").
_HEAD_REST: dict[Identity, bytes] = {}
_TAIL_PARTS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_CACHE_MAX = 4096  # device ids come from config; the bound only guards against a runaway


def check_id(value: str, what: str) -> str:
    """Return `value` if it is a valid protocol Id, else raise OutboxError naming `what`."""
    if not _ID.match(value):
        raise OutboxError(f"{what} {value!r} is not a valid id ([A-Za-z0-9_.:-], 1–64)")
    return value


def encode_pending(
    identity: Identity,
    device_id: str,
    payload: Payload,
    occurred_at: datetime,
    idempotency_key: str | None = None,
    guard: Guard | None = None,
) -> PendingEvent:
    """Serialize an event now, leaving a hole for the seq the writer assigns at commit."""
    kind = KIND_FOR_PAYLOAD[type(payload)]
    rest = _HEAD_REST.get(identity)
    if rest is None:
        rest = b'","agent_id":"%s","store_id":"%s","seq":' % (
            identity.agent_id.encode(),
            identity.store_id.encode(),
        )
        _HEAD_REST[identity] = _cached(_HEAD_REST, rest)
    parts = _TAIL_PARTS.get((device_id, kind))
    if parts is None:
        parts = (
            b',"device_id":"%s","occurred_at":"' % device_id.encode(),
            b'Z","schema":%d,"kind":"%s","payload":' % (SCHEMA_VERSION, kind.encode()),
        )
        _TAIL_PARTS[(device_id, kind)] = _cached(_TAIL_PARTS, parts)
    if occurred_at.utcoffset() != _ZERO:
        occurred_at = occurred_at.astimezone(UTC)
    # A UTC datetime's isoformat ends in "+00:00", which the envelope spells "Z".
    when = occurred_at.isoformat()[:-6].encode()
    event_id = uuid7_str()
    return PendingEvent(
        event_id,
        kind,
        b'{"event_id":"' + event_id.encode() + rest,
        parts[0] + when + parts[1] + payload.__pydantic_serializer__.to_json(payload) + b"}",
        guard,
        idempotency_key,
    )


def _cached(cache: dict[Any, Any], value: _T) -> _T:
    """`value`, emptying `cache` first if it is at its bound."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    return value


_ZERO = timedelta(0)
