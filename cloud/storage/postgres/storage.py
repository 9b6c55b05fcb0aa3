"""PostgreSQL backend: an asyncpg pool, migrations at open, daily event partitions."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from cloud.errors import Overloaded, RequestError, StorageError
from cloud.storage import DEFAULT_POOL_SIZE
from cloud.storage.base import (
    AgentIdentity,
    EventFilter,
    EventRow,
    FleetStats,
    HeartbeatRecord,
    PoolUsage,
    RateLimit,
    StoreDetail,
    StoredEvent,
    StoreFilter,
    StoreSummary,
)
from cloud.storage.postgres._coalesce import Coalescer
from cloud.storage.postgres._ingest import CREATE_STAGING, CURSOR_SHIFT, ingest_batch
from cloud.storage.postgres._migrate import Migration, migrate
from cloud.storage.postgres._partitions import (
    DAYS_AHEAD,
    Dropped,
    day_of,
    drop_before,
    ensure_partitions,
)
from cloud.storage.postgres._pool import DB_ERRORS, open_pool
from cloud.storage.postgres._sql import (
    AGENT_COLUMNS,
    STORE_SUMMARY,
    VISIBLE_HORIZON,
    Params,
    agent_from_row,
    summary_from_row,
)
from cloud.storage.postgres._tokens import find_agents, rekey, spend_code
from cloud.storage.postgres._types import Conn

log = logging.getLogger(__name__)

# Waiting longer than this for a free connection means the database is the bottleneck:
# answer 503 + Retry-After (Overloaded) rather than queue requests without bound.
ACQUIRE_TIMEOUT_S = 5.0
# A listing that would stop short of committed rows held back by an older open transaction
# polls this long for it to end (milliseconds for ingest, longer for DDL) before answering.
HOLD_BACK_WAIT_S = 2.0
HOLD_BACK_POLL_S = 0.02
# pg_try_advisory_lock key of the maintenance round, so one replica at a time does it.
MAINTENANCE_LOCK = 0x7365_6D61  # "se" "ma"
# A WHERE term that makes the statement's own (autocommit) transaction commit without
# waiting for the WAL flush. Only for writes a crash may lose harmlessly: a rate bucket
# (loses a few ms of charge) and a heartbeat (the next one comes 30 s later). At fleet scale
# that is 1,700 fsync waits a second not taken. Events and enrollments stay synchronous.
_NO_FSYNC = "set_config('synchronous_commit', 'off', true) IS NOT NULL"


@dataclass(frozen=True, slots=True)
class _Beat:
    agent_id: str
    record: HeartbeatRecord
    min_interval: timedelta


class PostgresStorage:
    """`Storage` on PostgreSQL; open with `await PostgresStorage.open(url)`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closed = False
        self._waiting = 0
        self.applied: list[Migration] = []  # migrations this open applied
        # The two calls every agent makes every 30 s go to the database in groups.
        self._logins: Coalescer[str, AgentIdentity | None] = Coalescer(self._authenticate_many)
        self._beats: Coalescer[_Beat, bool] = Coalescer(self._record_heartbeats)

    @classmethod
    async def open(cls, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> "PostgresStorage":
        """Connect, apply pending migrations and make today's partitions; StorageError if not."""
        settings = {"application_name": "storeedge-cloud"}
        pool = await open_pool(url, pool_size, settings, init=_init_connection)
        storage = cls(pool)
        try:
            async with storage._connection() as conn:
                storage.applied = await migrate(conn)
                # The week ahead is made before serving, not by the first maintenance round
                # while requests run: DDL transactions hold back event listings (the cursor
                # horizon) for as long as they are open.
                today = day_of(datetime.now(UTC))
                ahead = today + timedelta(days=DAYS_AHEAD)
                await ensure_partitions(conn, today - timedelta(days=1), ahead)
        except BaseException:
            await pool.close()
            raise
        return storage

    async def close(self) -> None:
        """Close every pooled connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._logins.close()
        await self._beats.close()
        await self._pool.close()

    async def ping(self) -> None:
        """Raise StorageError unless a trivial query succeeds."""
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def add_enroll_code(
        self, store_id: str, code_hash: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Store a code hash for a store (created if new); True when the store was created."""
        async with self._connection() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO stores (store_id, created_at) VALUES ($1, $2)"
                " ON CONFLICT (store_id) DO NOTHING RETURNING true",
                store_id,
                now,
            )
            await conn.execute(
                "INSERT INTO enroll_codes (code_hash, store_id, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4)",
                code_hash,
                store_id,
                now,
                expires_at,
            )
        return bool(created)

    async def enroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Spend the code and register the agent in one transaction, or EnrollmentRefused."""
        async with self._connection() as conn, conn.transaction():
            store_id = await spend_code(conn, code_hash, agent_id, now)
            await conn.execute(
                "INSERT INTO agents (agent_id, store_id, token_hash, agent_info, enrolled_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                agent_id,
                store_id,
                token_hash,
                orjson.dumps(agent_info).decode(),
                now,
            )
        return AgentIdentity(agent_id, store_id)

    async def reenroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Spend the code and re-key `agent_id` (or register it) in one transaction."""
        async with self._connection() as conn, conn.transaction():
            store_id = await spend_code(conn, code_hash, agent_id, now)
            info = orjson.dumps(agent_info).decode()
            await rekey(conn, agent_id, store_id, token_hash, info, now)
        return AgentIdentity(agent_id, store_id)

    async def rotate_token(self, agent_id: str, next_token_hash: str, now: datetime) -> bool:
        """Stage `next_token_hash` for an active agent; the current token stays valid."""
        del now  # the staged token has no expiry: it waits for the agent's next request
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE agents SET next_token_hash = $2 WHERE agent_id = $1 AND revoked_at IS NULL",
                agent_id,
                next_token_hash,
            )
        return bool(status == "UPDATE 1")

    async def authenticate(self, token_hash: str) -> AgentIdentity | None:
        """The active agent owning this token hash, or None; a staged token is promoted.

        Looked up together with concurrent calls (`_authenticate_many`).
        """
        if self._closed:
            raise StorageError("storage is closed")
        return await self._logins.submit(token_hash)

    async def revoke_agent(self, agent_id: str, now: datetime) -> bool:
        """Revoke an agent; True when an active agent was revoked."""
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE agents SET revoked_at = $2, next_token_hash = NULL"
                " WHERE agent_id = $1 AND revoked_at IS NULL",
                agent_id,
                now,
            )
        return bool(status == "UPDATE 1")

    async def record_heartbeat(
        self, agent_id: str, heartbeat: HeartbeatRecord, min_interval: timedelta = timedelta(0)
    ) -> bool:
        """Keep `heartbeat` as the agent's latest unless the previous one is too recent."""
        if self._closed:
            raise StorageError("storage is closed")
        return await self._beats.submit(_Beat(agent_id, heartbeat, min_interval))

    async def admit(self, key: str, cost: float, limit: RateLimit, now: datetime) -> float:
        """Charge `cost` to `key`'s GCRA bucket in one statement: 0.0, or seconds to wait."""
        now_s = now.timestamp()
        step = cost / limit.rate
        tolerance = limit.burst / limit.rate
        async with self._connection() as conn:
            admitted = await conn.fetchval(
                "INSERT INTO rate_limits AS r (key, tat)"
                f" SELECT $1, $2::float8 + $3::float8 WHERE {_NO_FSYNC}"
                " ON CONFLICT (key) DO UPDATE SET tat = greatest(r.tat, $2) + $3"
                " WHERE greatest(r.tat, $2) + $3 - $2 <= $4::float8 RETURNING true",
                key,
                now_s,
                step,
                tolerance,
            )
            if admitted:
                return 0.0
            wait = await conn.fetchval(
                "SELECT greatest(tat, $2::float8) + $3::float8 - $2 - $4::float8 FROM rate_limits"
                " WHERE key = $1",
                key,
                now_s,
                step,
                tolerance,
            )
        return max(float(wait or 0.0), 1e-3)

    async def ingest(
        self, agent: AgentIdentity, rows: Sequence[EventRow], received_at: datetime
    ) -> list[bool]:
        """COPY + one deduping insert, one transaction; per row True = stored, False = dup."""
        if not rows:
            return []
        async with self._connection() as conn:
            try:
                return await ingest_batch(conn, agent, rows, received_at)
            except asyncpg.CheckViolationError as exc:
                if "no partition" not in str(exc):
                    raise
            # Maintenance has not made this day yet (it keeps DAYS_AHEAD ready, so this is
            # a stopped maintenance loop or a clock far off): make it and try once more.
            day = day_of(received_at)
            await ensure_partitions(conn, day, day)
            return await ingest_batch(conn, agent, rows, received_at)

    async def list_stores(self, query: StoreFilter | None = None) -> list[StoreSummary]:
        """A keyset page of stores with their fleet aggregates, ordered by id."""
        query = query or StoreFilter()
        params = Params()
        where = []
        if query.after is not None:
            where.append(f"s.store_id > {params.add(query.after)}")
        if query.prefix:
            where.append(f"starts_with(s.store_id, {params.add(query.prefix)})")
        if query.silent_since is not None:
            bound = params.add(query.silent_since)
            where.append(f"coalesce(a.last_heartbeat_at, '-infinity') < {bound}")
        sql = STORE_SUMMARY
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY s.store_id LIMIT {params.add(query.limit)}"
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params.values)
        return [summary_from_row(row) for row in rows]

    async def get_store(self, store_id: str) -> StoreDetail | None:
        """One store and its agents, or None."""
        async with self._connection() as conn:
            row = await conn.fetchrow(STORE_SUMMARY + " WHERE s.store_id = $1", store_id)
            if row is None:
                return None
            agents = await conn.fetch(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE store_id = $1 ORDER BY enrolled_at",
                store_id,
            )
        return StoreDetail(summary_from_row(row), [agent_from_row(a) for a in agents])

    async def list_events(self, query: EventFilter) -> list[StoredEvent]:
        """Up to `query.limit` matching events in ascending cursor order.

        Rows above the visible horizon (an older transaction is still open) are never
        returned; a short page waits up to HOLD_BACK_WAIT_S for such rows before answering.
        """
        params = Params()
        where = []
        if query.store_id is not None:
            where.append(f"store_id = {params.add(query.store_id)}")
        if query.kind is not None:
            where.append(f"kind = {params.add(query.kind)}")
        if query.since is not None:
            where.append(f"occurred_at >= {params.add(query.since)}")
        if query.after is not None:
            where.append(f"cursor > {params.add(query.after)}")
        horizon = VISIBLE_HORIZON.format(shift=CURSOR_SHIFT)
        filters = "".join(f" AND {clause}" for clause in where)
        limit = params.add(query.limit)
        sql = (
            f"SELECT cursor, received_at, body FROM events WHERE cursor < {horizon}{filters}"
            f" ORDER BY cursor LIMIT {limit}"
        )
        held_sql = f"SELECT EXISTS (SELECT 1 FROM events WHERE cursor >= {horizon}{filters})"
        deadline = time.monotonic() + HOLD_BACK_WAIT_S
        while True:
            async with self._connection() as conn:
                rows = await conn.fetch(sql, *params.values)
                held = len(rows) < query.limit and await conn.fetchval(
                    held_sql, *params.values[:-1]
                )
            if not held or time.monotonic() >= deadline:
                return [StoredEvent(r[0], r[1], r[2]) for r in rows]
            await asyncio.sleep(HOLD_BACK_POLL_S)

    async def count_events(self, store_id: str | None, kind: str | None) -> int:
        """How many stored events match, from the counts ingest keeps."""
        params = Params()
        where = []
        if store_id is not None:
            where.append(f"store_id = {params.add(store_id)}")
        if kind is not None:
            where.append(f"kind = {params.add(kind)}")
        sql = "SELECT coalesce(sum(events), 0) FROM event_counts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self._connection() as conn:
            count = await conn.fetchval(sql, *params.values)
        return int(count)

    async def fleet_stats(self, online_since: datetime) -> FleetStats:
        """Store and active-agent counts, and agents heard from since `online_since`."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM stores), count(*),"
                " count(*) FILTER (WHERE heartbeat_at >= $1) FROM agents"
                " WHERE revoked_at IS NULL",
                online_since,
            )
        assert row is not None  # an aggregate always returns a row
        return FleetStats(stores=row[0], agents=row[1], agents_online=row[2])

    def connection(self) -> AbstractAsyncContextManager[Conn]:
        """A pooled connection for tables beside these (config, coupons); errors → StorageError."""
        return self._connection()

    def pool_usage(self) -> PoolUsage:
        """Pooled connections open and lent out, and callers waiting for one."""
        size = self._pool.get_size()
        return PoolUsage(size=size, busy=size - self._pool.get_idle_size(), waiting=self._waiting)

    async def maintain(self, now: datetime) -> None:
        """Partitions for the days ahead, then retention; one replica at a time, others skip."""
        async with self._connection() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MAINTENANCE_LOCK):
                return
            try:
                today = day_of(now)
                created = await ensure_partitions(
                    conn, today - timedelta(days=1), today + timedelta(days=DAYS_AHEAD)
                )
                if created:
                    log.info("created event partitions %s", ", ".join(map(str, created)))
                await self._apply_retention(conn, today)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK)

    async def retention_days(self) -> int | None:
        """Days of events kept (by received day), or None to keep everything."""
        async with self._connection() as conn:
            return await _retention(conn)

    async def set_retention(self, days: int | None) -> None:
        """Keep `days` days of events from now on (None: keep all); applies to every replica."""
        async with self._connection() as conn:
            if days is None:
                await conn.execute("DELETE FROM settings WHERE name = 'retention_days'")
            else:
                await conn.execute(
                    "INSERT INTO settings (name, value) VALUES ('retention_days', $1)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    orjson.dumps(days).decode(),
                )

    async def apply_retention(self, now: datetime) -> list[Dropped]:
        """Drop the day partitions retention no longer keeps; those dropped."""
        async with self._connection() as conn:
            return await self._apply_retention(conn, day_of(now))

    async def _apply_retention(self, conn: Conn, today: Any) -> list[Dropped]:
        days = await _retention(conn)
        if days is None:
            return []
        dropped = await drop_before(conn, today - timedelta(days=days))
        for gone in dropped:
            log.info("retention dropped events of %s (%d events)", gone.day, gone.events)
        return dropped

    async def _authenticate_many(self, token_hashes: Sequence[str]) -> list[AgentIdentity | None]:
        async with self._connection() as conn:
            found = await find_agents(conn, token_hashes)
        return [found.get(token_hash) for token_hash in token_hashes]

    async def _record_heartbeats(self, beats: Sequence[_Beat]) -> list[bool]:
        # One UPDATE for the group. An agent twice in one group (two heartbeats within a few
        # ms) keeps its first; the second is "too soon" unless no interval applies.
        first: dict[str, _Beat] = {}
        for beat in beats:
            first.setdefault(beat.agent_id, beat)
        ordered = sorted(first.values(), key=lambda b: b.agent_id)  # one lock order for all
        async with self._connection() as conn:
            rows = await conn.fetch(
                "UPDATE agents a SET heartbeat = h.body::jsonb, heartbeat_at = h.at,"
                " backlog_events = h.backlog, oldest_unsynced_age_s = h.oldest"
                " FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[],"
                " $5::float8[], $6::timestamptz[])"
                " AS h(agent_id, body, at, backlog, oldest, not_before)"
                " WHERE a.agent_id = h.agent_id"
                f" AND (a.heartbeat_at IS NULL OR a.heartbeat_at <= h.not_before) AND {_NO_FSYNC}"
                " RETURNING a.agent_id",
                [b.agent_id for b in ordered],
                [orjson.dumps(b.record.body).decode() for b in ordered],
                [b.record.received_at for b in ordered],
                [b.record.backlog_events for b in ordered],
                [b.record.oldest_unsynced_age_s for b in ordered],
                [b.record.received_at - b.min_interval for b in ordered],
            )
        stored = {row[0] for row in rows}
        return [
            beat.agent_id in stored and (first[beat.agent_id] is beat or not beat.min_interval)
            for beat in beats
        ]

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        # The one place database errors become StorageError (and a dry pool Overloaded).
        if self._closed:
            raise StorageError("storage is closed")
        self._waiting += 1
        try:
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except TimeoutError as exc:
            raise Overloaded("busy: no database connection free, retry shortly") from exc
        except DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        finally:
            self._waiting -= 1
        try:
            yield conn
        except DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        except RequestError:
            # A refusal (unknown code, version conflict): raised between statements, and a
            # transaction block rolls back on its way out, so the session is clean to pool.
            raise
        except BaseException:
            # Cancelled mid-statement (shutdown): the session may sit idle in a transaction
            # holding locks. Closing it makes the server roll back; never pool it again.
            conn.terminate()
            raise
        finally:
            await self._pool.release(conn)


async def _init_connection(conn: Conn) -> None:
    # Each pooled connection gets its own staging table once, not once per batch.
    await conn.execute(CREATE_STAGING)


async def _retention(conn: Conn) -> int | None:
    value = await conn.fetchval("SELECT value FROM settings WHERE name = 'retention_days'")
    return None if value is None else int(orjson.loads(value))
