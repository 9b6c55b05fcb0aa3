"""The storage interface every backend implements (SQLite by default, PostgreSQL at scale).

Views never see SQL: they call these coroutines with plain values and get frozen records back.
Contract points a backend must keep:
- `ingest` is one transaction per batch and dedupes permanently on `event_id`: the first copy
  ever stored wins and every later copy, in the same batch or years later, is a duplicate.
- Ingest cursors (`StoredEvent.cursor`) only grow, and a reader paging with `after=` never
  skips a row committed later with a smaller cursor. SQLite's single writer gives this for
  free; PostgreSQL sequences do not (commit order ≠ nextval order), so that backend must
  serialize cursor assignment or hold back rows newer than the oldest open transaction.
- Nothing a retry depends on lives in the process: enrollment codes, rate-limit buckets and
  heartbeat intervals are rows, so any replica over the same database answers the same way.
- Failures surface as `StorageError` (a pool too busy to lend a connection as `Overloaded`);
  refusals the caller caused as `RequestError`s.
- Times go in and out as aware UTC datetimes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who a valid agent token belongs to."""

    agent_id: str
    store_id: str


@dataclass(frozen=True, slots=True)
class EventRow:
    """One validated event to store for the authenticated agent; `body` is its JSON."""

    event_id: str  # canonical lowercase UUID text, the permanent dedupe key
    seq: int
    device_id: str
    kind: str
    occurred_at: datetime
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event as the admin API lists it; `body` is the JSON as received."""

    cursor: int
    received_at: datetime
    body: str


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to list or count; `since` bounds `occurred_at`, `after` the cursor."""

    store_id: str | None = None
    kind: str | None = None
    since: datetime | None = None
    after: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoreFilter:
    """Which stores to list: a keyset page after store id `after`, optionally narrowed.

    `prefix` keeps store ids starting with it; `silent_since` keeps stores whose newest
    heartbeat is older than it (or that never sent one), the console's "offline" view.
    """

    after: str | None = None
    prefix: str | None = None
    silent_since: datetime | None = None
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A GCRA limit on one key: `rate` units per second sustained, bursts of up to `burst`."""

    rate: float
    burst: float


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Fleet-wide gauges for /metrics."""

    stores: int
    agents: int
    agents_online: int


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """Database connections right now: open, busy, and callers waiting for one."""

    size: int
    busy: int
    waiting: int


@dataclass(frozen=True, slots=True)
class EnrollCode:
    """A freshly issued enrollment code (the plaintext exists only here, never in storage)."""

    code: str
    store_id: str
    expires_at: datetime
    store_created: bool


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    """The latest heartbeat of one agent as stored: the fields the fleet view aggregates."""

    received_at: datetime
    backlog_events: int
    oldest_unsynced_age_s: float | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """One row of the fleet list."""

    store_id: str
    created_at: datetime
    agents: int
    last_heartbeat_at: datetime | None
    backlog_events: int
    oldest_unsynced_age_s: float | None
    events_total: int


@dataclass(frozen=True, slots=True)
class AgentDetail:
    """One agent of a store with its latest heartbeat."""

    agent_id: str
    enrolled_at: datetime
    revoked_at: datetime | None
    agent_info: dict[str, Any]
    events_total: int
    last_seq: int | None
    last_event_at: datetime | None
    heartbeat: HeartbeatRecord | None


@dataclass(frozen=True, slots=True)
class StoreDetail:
    """A store with all its agents."""

    summary: StoreSummary
    agents: list[AgentDetail]


class Storage(Protocol):
    """Async storage for the fleet registry and the event log."""

    async def ping(self) -> None:
        """Return once the backend answers a trivial query; raise StorageError otherwise."""

    async def close(self) -> None:
        """Release connections and threads; calling it twice is harmless."""

    async def add_enroll_code(
        self, store_id: str, code_hash: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Store a code hash for a store (created if new); True when the store was created."""

    async def enroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Atomically spend the code and register `agent_id` under the code's store.

        Raises EnrollmentRefused with a reason when the code is unknown, used or expired.
        """

    async def reenroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Atomically spend the code and give `agent_id` a fresh token (un-revoking it).

        An agent id unknown to storage is registered under the code's store. Raises
        EnrollmentRefused for a bad code, or when `agent_id` belongs to another store (the
        code is then not spent).
        """

    async def rotate_token(self, agent_id: str, next_token_hash: str, now: datetime) -> bool:
        """Stage a new token for an active agent; False when it is unknown or revoked.

        The current token keeps working until the staged one is first presented to
        `authenticate`, which then promotes it and retires the old: an answer lost on the way
        to the agent cannot lock it out. Staging again replaces an unused staged token.
        """

    async def authenticate(self, token_hash: str) -> AgentIdentity | None:
        """The agent owning this token hash (current or staged), or None when unknown/revoked.

        A staged token (see `rotate_token`) is promoted to current by its first use.
        """

    async def revoke_agent(self, agent_id: str, now: datetime) -> bool:
        """Revoke an agent's token; True when an active agent was revoked."""

    async def record_heartbeat(
        self, agent_id: str, heartbeat: HeartbeatRecord, min_interval: timedelta = timedelta(0)
    ) -> bool:
        """Keep `heartbeat` as the agent's latest; False (nothing stored) when the previous one
        is younger than `min_interval`."""

    async def admit(self, key: str, cost: float, limit: RateLimit, now: datetime) -> float:
        """Charge `cost` units to `key`'s bucket: 0.0 when admitted, else the seconds to wait.

        A refused request is not charged. `cost` must not exceed `limit.burst`.
        """

    async def ingest(
        self, agent: AgentIdentity, rows: Sequence[EventRow], received_at: datetime
    ) -> list[bool]:
        """Store a batch in one transaction; per row True = newly stored, False = duplicate."""

    async def list_stores(self, query: StoreFilter | None = None) -> list[StoreSummary]:
        """Up to `query.limit` stores matching the filter, ordered by id."""

    async def get_store(self, store_id: str) -> StoreDetail | None:
        """One store with its agents, or None when unknown."""

    async def list_events(self, query: EventFilter) -> list[StoredEvent]:
        """Up to `query.limit` events matching the filter, in ascending cursor order."""

    async def count_events(self, store_id: str | None, kind: str | None) -> int:
        """How many events match (`since`/`after` do not apply)."""

    async def fleet_stats(self, online_since: datetime) -> FleetStats:
        """Store and active-agent counts; online = heartbeat received at or after `online_since`."""

    def pool_usage(self) -> PoolUsage:
        """Connection use right now, without I/O (read at every /metrics scrape)."""

    async def maintain(self, now: datetime) -> None:
        """Periodic upkeep (partitions ahead, retention); cheap when nothing is due."""
