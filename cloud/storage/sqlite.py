"""SQLite backend: WAL, one connection on one dedicated thread, one transaction per call."""

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from cloud.errors import EnrollmentRefused
from cloud.storage._gcra import gcra
from cloud.storage._schema import migrate
from cloud.storage._sqlite_sql import (
    AGENT_COLUMNS,
    BUSY_TIMEOUT_S,
    INSERT_EVENT,
    STORE_SUMMARY,
    agent_from_row,
    filter_clauses,
    from_us,
    prefix_bound,
    refusal,
    summary_from_row,
    to_us,
    write,
)
from cloud.storage._thread import SqliteThread
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


class SqliteStorage:
    """`Storage` on one SQLite file; open with `await SqliteStorage.open(path)`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = SqliteThread(self._connect, name=f"cloud-sqlite:{path}")

    @classmethod
    async def open(cls, path: str) -> "SqliteStorage":
        """Open (creating and migrating if needed) the database at `path`."""
        storage = cls(path)
        await storage._thread.async_start()
        return storage

    @property
    def thread(self) -> SqliteThread:
        """The one connection's thread; the coupon tables share it (sqlite_coupons.py)."""
        return self._thread

    async def close(self) -> None:
        """Close the connection and stop its thread; idempotent."""
        await self._thread.async_close()

    async def ping(self) -> None:
        """Raise StorageError unless a trivial query succeeds."""
        await self._thread.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def add_enroll_code(
        self, store_id: str, code_hash: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Store a code hash for a store (created if new); True when the store was created."""

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                created = conn.execute(
                    "INSERT INTO stores (store_id, created_at) VALUES (?, ?)"
                    " ON CONFLICT (store_id) DO NOTHING",
                    (store_id, to_us(now)),
                ).rowcount
                conn.execute(
                    "INSERT INTO enroll_codes (code_hash, store_id, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (code_hash, store_id, to_us(now), to_us(expires_at)),
                )
            return created == 1

        return await self._thread.run(work)

    async def enroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Spend the code and register the agent in one transaction, or EnrollmentRefused."""
        now_us = to_us(now)
        info = orjson.dumps(agent_info).decode()

        def work(conn: sqlite3.Connection) -> AgentIdentity:
            with write(conn):
                store_id = _spend_code(conn, code_hash, agent_id, now_us)
                conn.execute(
                    "INSERT INTO agents (agent_id, store_id, token_hash, agent_info, enrolled_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (agent_id, store_id, token_hash, info, now_us),
                )
            return AgentIdentity(agent_id, store_id)

        return await self._thread.run(work)

    async def reenroll(
        self,
        code_hash: str,
        agent_id: str,
        token_hash: str,
        agent_info: dict[str, Any],
        now: datetime,
    ) -> AgentIdentity:
        """Spend the code and re-key `agent_id` (or register it) in one transaction."""
        now_us = to_us(now)
        info = orjson.dumps(agent_info).decode()

        def work(conn: sqlite3.Connection) -> AgentIdentity:
            with write(conn):
                store_id = _spend_code(conn, code_hash, agent_id, now_us)
                row = conn.execute(
                    "SELECT store_id FROM agents WHERE agent_id = ?", (agent_id,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO agents (agent_id, store_id, token_hash, agent_info,"
                        " enrolled_at) VALUES (?, ?, ?, ?, ?)",
                        (agent_id, store_id, token_hash, info, now_us),
                    )
                elif row[0] != store_id:
                    # Raising rolls the transaction back: the code stays unspent.
                    raise EnrollmentRefused(
                        f"agent {agent_id} belongs to store {row[0]}, this code is for store"
                        f" {store_id}; enroll as a new agent instead",
                        key="agent_other_store",
                    )
                else:
                    conn.execute(
                        "UPDATE agents SET token_hash = ?, next_token_hash = NULL,"
                        " revoked_at = NULL, agent_info = ? WHERE agent_id = ?",
                        (token_hash, info, agent_id),
                    )
            return AgentIdentity(agent_id, store_id)

        return await self._thread.run(work)

    async def rotate_token(self, agent_id: str, next_token_hash: str, now: datetime) -> bool:
        """Stage `next_token_hash` for an active agent; the current token stays valid."""
        del now  # the staged token has no expiry: it waits for the agent's next request

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                cursor = conn.execute(
                    "UPDATE agents SET next_token_hash = ? WHERE agent_id = ?"
                    " AND revoked_at IS NULL",
                    (next_token_hash, agent_id),
                )
            return cursor.rowcount == 1

        return await self._thread.run(work)

    async def authenticate(self, token_hash: str) -> AgentIdentity | None:
        """The active agent owning this token hash, or None; a staged token is promoted."""

        def work(conn: sqlite3.Connection) -> AgentIdentity | None:
            row = conn.execute(
                "SELECT agent_id, store_id, token_hash = ? FROM agents"
                " WHERE (token_hash = ? OR next_token_hash = ?) AND revoked_at IS NULL",
                (token_hash, token_hash, token_hash),
            ).fetchone()
            if row is None:
                return None  # forged tokens never take the write lock
            if not row[2]:
                with write(conn):
                    # First use of a staged token: it becomes the only valid one.
                    conn.execute(
                        "UPDATE agents SET token_hash = next_token_hash, next_token_hash = NULL"
                        " WHERE agent_id = ? AND next_token_hash = ?",
                        (row[0], token_hash),
                    )
            return AgentIdentity(row[0], row[1])

        return await self._thread.run(work)

    async def revoke_agent(self, agent_id: str, now: datetime) -> bool:
        """Revoke an agent; True when an active agent was revoked."""

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                cursor = conn.execute(
                    "UPDATE agents SET revoked_at = ?, next_token_hash = NULL"
                    " WHERE agent_id = ? AND revoked_at IS NULL",
                    (to_us(now), agent_id),
                )
            return cursor.rowcount == 1

        return await self._thread.run(work)

    async def record_heartbeat(
        self, agent_id: str, heartbeat: HeartbeatRecord, min_interval: timedelta = timedelta(0)
    ) -> bool:
        """Keep `heartbeat` as the agent's latest unless the previous one is too recent."""
        received_us = to_us(heartbeat.received_at)
        params = (
            orjson.dumps(heartbeat.body).decode(),
            received_us,
            heartbeat.backlog_events,
            heartbeat.oldest_unsynced_age_s,
            agent_id,
            received_us - min_interval // timedelta(microseconds=1),
        )

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                # The interval check is in the WHERE clause: one statement, and the answer is
                # the same whichever replica (or process) the heartbeat reaches.
                cursor = conn.execute(
                    "UPDATE agents SET heartbeat = ?, heartbeat_at = ?, backlog_events = ?,"
                    " oldest_unsynced_age_s = ? WHERE agent_id = ?"
                    " AND (heartbeat_at IS NULL OR heartbeat_at <= ?)",
                    params,
                )
            return cursor.rowcount == 1

        return await self._thread.run(work)

    async def admit(self, key: str, cost: float, limit: RateLimit, now: datetime) -> float:
        """Charge `cost` to `key`'s GCRA bucket: 0.0 when admitted, else seconds to wait."""
        now_s = now.timestamp()

        def work(conn: sqlite3.Connection) -> float:
            with write(conn):
                row = conn.execute("SELECT tat FROM rate_limits WHERE key = ?", (key,)).fetchone()
                new_tat, wait = gcra(None if row is None else row[0], now_s, cost, limit)
                if new_tat is not None:
                    conn.execute(
                        "INSERT INTO rate_limits (key, tat) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
                        (key, new_tat),
                    )
            return wait

        return await self._thread.run(work)

    async def ingest(
        self, agent: AgentIdentity, rows: Sequence[EventRow], received_at: datetime
    ) -> list[bool]:
        """Insert a batch in one transaction; per row True = stored, False = duplicate."""
        received_us = to_us(received_at)
        params = [
            (
                row.event_id,
                agent.agent_id,
                agent.store_id,
                row.seq,
                row.device_id,
                row.kind,
                to_us(row.occurred_at),
                received_us,
                row.body.decode(),
            )
            for row in rows
        ]

        def work(conn: sqlite3.Connection) -> list[bool]:
            cursor = conn.cursor()
            with write(conn):
                # One execute per row, not executemany: rowcount per row is what tells a
                # duplicate (0, ON CONFLICT DO NOTHING) from a new event (1), including a
                # second copy inside this same batch.
                stored = []
                for p in params:
                    cursor.execute(INSERT_EVENT, p)
                    stored.append(cursor.rowcount == 1)
                new = [p[3] for p, ok in zip(params, stored, strict=True) if ok]
                if new:
                    cursor.execute(
                        "UPDATE stores SET events_total = events_total + ? WHERE store_id = ?",
                        (len(new), agent.store_id),
                    )
                    cursor.execute(
                        "UPDATE agents SET events_total = events_total + ?,"
                        " last_seq = max(coalesce(last_seq, 0), ?), last_event_at = ?"
                        " WHERE agent_id = ?",
                        (len(new), max(new), received_us, agent.agent_id),
                    )
            return stored

        return await self._thread.run(work)

    async def list_stores(self, query: StoreFilter | None = None) -> list[StoreSummary]:
        """A keyset page of stores with their fleet aggregates, ordered by id."""
        query = query or StoreFilter()
        where: list[str] = []
        params: list[Any] = []
        if query.after is not None:
            where.append("s.store_id > ?")
            params.append(query.after)
        if query.prefix:
            where.append("s.store_id >= ? AND s.store_id < ?")
            params += [query.prefix, prefix_bound(query.prefix)]
        sql = STORE_SUMMARY
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY s.store_id"
        if query.silent_since is not None:
            sql += " HAVING coalesce(MAX(a.heartbeat_at), -1) < ?"
            params.append(to_us(query.silent_since))
        sql += " ORDER BY s.store_id LIMIT ?"
        params.append(query.limit)

        def work(conn: sqlite3.Connection) -> list[StoreSummary]:
            return [summary_from_row(row) for row in conn.execute(sql, params)]

        return await self._thread.run(work)

    async def get_store(self, store_id: str) -> StoreDetail | None:
        """One store and its agents, or None."""

        def work(conn: sqlite3.Connection) -> StoreDetail | None:
            sql = STORE_SUMMARY + " WHERE s.store_id = ? GROUP BY s.store_id"
            row = conn.execute(sql, (store_id,)).fetchone()
            if row is None:
                return None
            agents = conn.execute(
                f"SELECT {AGENT_COLUMNS} FROM agents WHERE store_id = ? ORDER BY enrolled_at",
                (store_id,),
            ).fetchall()
            return StoreDetail(summary_from_row(row), [agent_from_row(a) for a in agents])

        return await self._thread.run(work)

    async def list_events(self, query: EventFilter) -> list[StoredEvent]:
        """Up to `query.limit` matching events in ascending cursor order."""
        where, params = filter_clauses(query.store_id, query.kind)
        if query.since is not None:
            where.append("occurred_at >= ?")
            params.append(to_us(query.since))
        if query.after is not None:
            where.append("id > ?")
            params.append(query.after)
        sql = "SELECT id, received_at, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        params.append(query.limit)

        def work(conn: sqlite3.Connection) -> list[StoredEvent]:
            return [StoredEvent(i, from_us(r), b) for i, r, b in conn.execute(sql, params)]

        return await self._thread.run(work)

    async def count_events(self, store_id: str | None, kind: str | None) -> int:
        """How many stored events match."""
        if kind is None:
            # Ingest keeps per-store totals in the same transaction, so they are exact and
            # spare a scan of the event index.
            sql = "SELECT coalesce(sum(events_total), 0) FROM stores"
            where, params = filter_clauses(store_id, None)
        else:
            sql = "SELECT count(*) FROM events"
            where, params = filter_clauses(store_id, kind)
        if where:
            sql += " WHERE " + " AND ".join(where)

        def work(conn: sqlite3.Connection) -> int:
            count: int = conn.execute(sql, params).fetchone()[0]
            return count

        return await self._thread.run(work)

    async def fleet_stats(self, online_since: datetime) -> FleetStats:
        """Store and active-agent counts, and agents heard from since `online_since`."""

        def work(conn: sqlite3.Connection) -> FleetStats:
            (stores,) = conn.execute("SELECT count(*) FROM stores").fetchone()
            agents, online = conn.execute(
                "SELECT count(*), coalesce(sum(heartbeat_at >= ?), 0) FROM agents"
                " WHERE revoked_at IS NULL",
                (to_us(online_since),),
            ).fetchone()
            return FleetStats(stores=stores, agents=agents, agents_online=online)

        return await self._thread.run(work)

    def pool_usage(self) -> PoolUsage:
        """One connection: busy while a call runs, the rest of the queue waiting."""
        pending = self._thread.pending
        return PoolUsage(size=1, busy=min(pending, 1), waiting=max(pending - 1, 0))

    async def maintain(self, now: datetime) -> None:
        """Nothing is due: one file, no partitions, and dedupe needs every row kept."""

    def _connect(self) -> sqlite3.Connection:
        # Runs on the storage thread: the connection never leaves it.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL, not NORMAL: an agent deletes events once we answer "accepted", so a commit
            # must survive power loss too. One fsync per batch, not per event.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn


def _spend_code(conn: sqlite3.Connection, code_hash: str, agent_id: str, now_us: int) -> str:
    """Mark an unexpired, unused code used by `agent_id`; its store id, or EnrollmentRefused."""
    # The WHERE clause is the whole single-use check: two agents racing for one code cannot
    # both match, since the first UPDATE sets used_at.
    spent = conn.execute(
        "UPDATE enroll_codes SET used_at = ?, used_by = ? WHERE code_hash = ?"
        " AND used_at IS NULL AND expires_at > ? RETURNING store_id",
        (now_us, agent_id, code_hash, now_us),
    ).fetchall()  # fetchall: a half-read RETURNING statement would block COMMIT
    if not spent:
        raise refusal(conn, code_hash)
    ((store_id,),) = spent
    return str(store_id)
