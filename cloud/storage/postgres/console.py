"""`ConsoleStorage` on PostgreSQL: the console tables of 0003_console.sql, on a pool of its own.

Its own small pool, not the ingest one: a fleet page at 100,000 stores or an evaluator round
then never holds a connection an agent's batch is waiting for (ingest answers 503 after
ACQUIRE_TIMEOUT_S without one), and the console's load cannot grow past CONSOLE_POOL_SIZE.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg

from cloud.errors import Overloaded, StorageError, UsageError
from cloud.storage.console import (
    AlertChanges,
    AlertQuery,
    AlertRecord,
    AlertThresholds,
    AuditEntry,
    AuditRecord,
    DeviceRecord,
    FleetPage,
    FleetQuery,
    FleetRow,
    HourlyCount,
    Role,
    ScanExample,
    ScanStats,
    SessionRecord,
    StatusChange,
    StoreSeries,
    TailEvent,
    UserRecord,
)
from cloud.storage.postgres import console_rollup as rollup
from cloud.storage.postgres._ingest import CURSOR_SHIFT
from cloud.storage.postgres._migrate import migrate
from cloud.storage.postgres._sql import VISIBLE_HORIZON, Params
from cloud.storage.postgres._types import Conn
from cloud.storage.postgres.console_sql import (
    ALERT_COLUMNS,
    FLEET_COLUMNS,
    TOTALS_SQL,
    USER_COLUMNS,
    alert_from_row,
    cutoffs,
    day_number,
    fleet_order,
    fleet_row,
    fleet_where,
    hour_floor,
    totals_from_row,
    user_from_row,
)

# Connections per replica: one for the evaluator, the rest for pages and the live poller.
CONSOLE_POOL_SIZE = 4
ACQUIRE_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
# A session's last use is written at most this often: not one write per page view.
SESSION_TOUCH = timedelta(seconds=60)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Tail reads stop below the listing horizon (0002_events.sql), so a cursor the page hands to
# the live view never jumps over an event that commits later with a smaller cursor.
_HORIZON = VISIBLE_HORIZON.format(shift=CURSOR_SHIFT)
# The counted kinds of `kind_series` -> their column of console_hourly.
_SERIES_COLUMNS = {"coupon.redeemed": "redemptions", "scan": "scans", "events": "events"}
_HOURLY_KINDS = ("events", "scan", "unrecognised", "coupon.redeemed")


class PostgresConsoleStorage:
    """Console tables in the PostgreSQL database; open with `await …open(url)`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, url: str, pool_size: int = CONSOLE_POOL_SIZE) -> "PostgresConsoleStorage":
        """Connect and apply pending migrations (the console's among them); StorageError if not."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings={"application_name": "storeedge-console"},
            )
        except (*_DB_ERRORS, ValueError) as exc:
            raise StorageError(f"cannot open database: {exc}") from exc
        storage = cls(pool)
        try:
            async with storage._connection() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return storage

    async def close(self) -> None:
        """Close every pooled connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    # --- accounts, sessions, audit -----------------------------------------------------

    async def add_user(
        self, username: str, password_hash: str, role: Role, now: datetime
    ) -> UserRecord:
        """Create an account; UsageError when the name is taken (case-insensitively)."""
        try:
            async with self._connection() as conn:
                row = await conn.fetchrow(
                    "INSERT INTO console_users (username, password_hash, role, created_at,"
                    f" password_changed_at) VALUES ($1, $2, $3, $4, $4) RETURNING {USER_COLUMNS}",
                    username,
                    password_hash,
                    role,
                    now,
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise UsageError(f"user {username!r} already exists") from exc.__cause__
            raise
        assert row is not None
        return user_from_row(row)

    async def user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """The account and its password hash, or None."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS}, password_hash FROM console_users"
                " WHERE lower(username) = lower($1)",
                username,
            )
        return None if row is None else (user_from_row(row), row["password_hash"])

    async def list_users(self) -> list[UserRecord]:
        """Every account by name (case-insensitively, as SQLite's NOCASE orders them)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {USER_COLUMNS} FROM console_users ORDER BY lower(username), username"
            )
        return [user_from_row(r) for r in rows]

    async def update_user(
        self,
        username: str,
        now: datetime,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> UserRecord | None:
        """Change an account; never leaves the console without an active admin."""
        async with self._connection() as conn, conn.transaction():
            # One account change at a time: two admins demoting each other at once would
            # each still see the other and both succeed.
            await rollup.lock_meta(conn, "accounts")
            row = await conn.fetchrow(
                f"SELECT {USER_COLUMNS} FROM console_users WHERE lower(username) = lower($1)",
                username,
            )
            if row is None:
                return None
            user = user_from_row(row)
            row = await conn.fetchrow(
                "UPDATE console_users SET role = coalesce($2, role),"
                " password_hash = coalesce($3, password_hash),"
                " password_changed_at = CASE WHEN $3::text IS NULL THEN password_changed_at"
                " ELSE $4 END,"
                " disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at"
                " WHEN $5 THEN $4 END"
                f" WHERE user_id = $1 RETURNING {USER_COLUMNS}",
                user.user_id,
                role,
                password_hash,
                now,
                disabled,
            )
            if password_hash is not None or disabled:
                await conn.execute("DELETE FROM console_sessions WHERE user_id = $1", user.user_id)
            admins = await conn.fetchval(
                "SELECT count(*) FROM console_users WHERE role = 'admin' AND disabled_at IS NULL"
            )
            if admins == 0 and user.role == "admin":
                raise UsageError("refused: the console would be left without an active admin")
        assert row is not None
        return user_from_row(row)

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new session."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO console_sessions (token_hash, user_id, csrf_token, created_at,"
                " expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $4)",
                token_hash,
                user_id,
                csrf_token,
                now,
                expires_at,
            )

    async def get_session(
        self, token_hash: str, now: datetime, idle_s: float
    ) -> SessionRecord | None:
        """The live session of an active user, or None; marks it used."""
        user_cols = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {user_cols}, s.csrf_token, s.created_at AS s_created, s.expires_at,"
                " s.last_seen_at FROM console_sessions s JOIN console_users u USING (user_id)"
                " WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3"
                " AND u.disabled_at IS NULL",
                token_hash,
                now,
                now - timedelta(seconds=idle_s),
            )
            if row is None:
                return None
            if now - row["last_seen_at"] > SESSION_TOUCH:
                await conn.execute(
                    "UPDATE console_sessions SET last_seen_at = $2 WHERE token_hash = $1",
                    token_hash,
                    now,
                )
        return SessionRecord(
            user_from_row(row), row["csrf_token"], row["s_created"], row["expires_at"]
        )

    async def delete_session(self, token_hash: str) -> None:
        """End a session; unknown hashes are ignored."""
        async with self._connection() as conn:
            await conn.execute("DELETE FROM console_sessions WHERE token_hash = $1", token_hash)

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append to the audit log."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO console_audit (at, actor, action, target, detail, remote)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                entry.at,
                entry.actor,
                entry.action,
                entry.target,
                entry.detail,
                entry.remote,
            )

    async def list_audit(self, offset: int, limit: int) -> tuple[list[AuditRecord], int]:
        """Newest first, with the total."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT audit_id, at, actor, action, target, detail, remote FROM console_audit"
                " ORDER BY audit_id DESC LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
            total: int = await conn.fetchval("SELECT count(*) FROM console_audit")
        return [AuditRecord(r[0], AuditEntry(*r[1:])) for r in rows], total

    # --- background work ---------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take the lease if free or expired, renew it if ours: one conditional upsert."""
        async with self._connection() as conn:
            taken = await conn.fetchval(
                "INSERT INTO console_leases AS l (name, holder, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at WHERE l.holder = $2 OR l.expires_at <= $4"
                " RETURNING true",
                name,
                holder,
                now + timedelta(seconds=ttl_s),
                now,
            )
        return bool(taken)

    async def release_lease(self, name: str, holder: str) -> None:
        """Let another replica take over at once."""
        async with self._connection() as conn:
            await conn.execute(
                "DELETE FROM console_leases WHERE name = $1 AND holder = $2", name, holder
            )

    async def refresh_fleet(self, now: datetime) -> int:
        """Fold changed agents and new stores into the roll-up."""
        async with self._connection() as conn:
            return await rollup.refresh_fleet(conn)

    async def aggregate_events(self, now: datetime, max_events: int) -> int:
        """Count the next events into the roll-up."""
        async with self._connection() as conn:
            return await rollup.aggregate_events(conn, now, max_events)

    async def evaluate_alerts(self, thresholds: AlertThresholds, now: datetime) -> AlertChanges:
        """Run every rule in one transaction."""
        async with self._connection() as conn:
            return await rollup.evaluate_alerts(conn, thresholds, now)

    async def prune(self, before: datetime, now: datetime) -> None:
        """Drop old counts, resolved alerts and dead sessions."""
        async with self._connection() as conn:
            await rollup.prune(conn, before, now)

    # --- reads --------------------------------------------------------------------------

    async def fleet_page(self, query: FleetQuery) -> FleetPage:
        """One page of stores, the matching count and the totals."""
        params = Params()
        where = fleet_where(query, params)
        filters = list(params.values)
        page_sql = f"SELECT {FLEET_COLUMNS} FROM console_fleet{where}{fleet_order(query, params)}"
        stale_cut, offline_cut = cutoffs(query.thresholds)
        today = day_number(query.thresholds.now)
        async with self._connection() as conn:
            rows = await conn.fetch(page_sql, *params.values)
            totals_row = await conn.fetchrow(TOTALS_SQL, stale_cut, offline_cut, today)
            assert totals_row is not None
            totals = totals_from_row(totals_row)
            matching = totals.stores
            if where:
                matching = await conn.fetchval(
                    f"SELECT count(*) FROM console_fleet{where}", *filters
                )
        return FleetPage([fleet_row(r, today) for r in rows], matching, totals)

    async def fleet_row(self, store_id: str) -> FleetRow | None:
        """One store's roll-up."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {FLEET_COLUMNS} FROM console_fleet WHERE store_id = $1", store_id
            )
        return None if row is None else fleet_row(row, day_number(datetime.now(UTC)))

    async def store_devices(self, store_id: str) -> list[DeviceRecord]:
        """Current device states."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT device_id, kind, state, condition, detail, updated_at FROM console_devices"
                " WHERE store_id = $1 ORDER BY device_id",
                store_id,
            )
        return [DeviceRecord(*r) for r in rows]

    async def status_history(self, store_id: str, limit: int) -> list[StatusChange]:
        """Latest device.status events, newest first."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT cursor, device_id, occurred_at, body::jsonb #>> '{payload,state}',"
                " body::jsonb #>> '{payload,condition}', body::jsonb #>> '{payload,detail}'"
                " FROM events WHERE store_id = $1 AND kind = 'device.status'"
                " ORDER BY cursor DESC LIMIT $2",
                store_id,
                limit,
            )
        return [StatusChange(r[0], r[1], r[2], r[3] or "", r[4] or "", r[5]) for r in rows]

    async def scan_stats(self, store_id: str, since: datetime) -> list[ScanStats]:
        """Scans and unrecognised scans per device since the hour `since` falls in."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT device_id, sum(scans)::bigint, sum(unrecognised)::bigint"
                " FROM console_device_hourly WHERE store_id = $1 AND hour >= $2"
                " GROUP BY device_id ORDER BY device_id",
                store_id,
                hour_floor(since),
            )
        return [ScanStats(*r) for r in rows]

    async def scan_examples(self, store_id: str, limit: int) -> list[ScanExample]:
        """Latest unrecognised scans, newest first."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT cursor, device_id, occurred_at, text, symbology, reason"
                " FROM console_scan_examples WHERE store_id = $1 ORDER BY cursor DESC LIMIT $2",
                store_id,
                limit,
            )
        return [ScanExample(*r) for r in rows]

    async def hourly_counts(self, store_id: str, since: datetime) -> list[HourlyCount]:
        """Events per hour (and scans, unrecognised, redemptions as kinds), oldest first."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT hour, events, scans, unrecognised, redemptions FROM console_hourly"
                " WHERE store_id = $1 AND hour >= $2 ORDER BY hour",
                store_id,
                since,
            )
        return [
            HourlyCount(row[0], kind, count)
            for row in rows
            for kind, count in zip(_HOURLY_KINDS, row[1:], strict=True)
        ]

    async def kind_series(self, kind: str, since: datetime, stores: int) -> list[StoreSeries]:
        """Hourly counts of one counted kind for the busiest stores, in one query."""
        column = _SERIES_COLUMNS.get(kind)
        if column is None:
            raise UsageError(f"no hourly series is kept for kind {kind!r}")
        where = f"hour >= $1 AND {column} > 0"
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"WITH top AS (SELECT store_id, sum({column})::bigint AS n FROM console_hourly"
                f" WHERE {where} GROUP BY store_id ORDER BY n DESC, store_id LIMIT $2)"
                f" SELECT t.store_id, t.n, h.hour, h.{column} FROM top t"
                f" JOIN console_hourly h ON h.store_id = t.store_id AND h.{where}"
                " ORDER BY t.n DESC, t.store_id, h.hour",
                since,
                stores,
            )
        series: list[StoreSeries] = []
        for store_id, total, hour, count in rows:
            if not series or series[-1].store_id != store_id:
                series.append(StoreSeries(store_id, total, []))
            series[-1].points.append((hour, count))
        return series

    async def latest_events(
        self, store_id: str, kinds: Sequence[str] | None, limit: int
    ) -> list[TailEvent]:
        """Latest events of a store below the listing horizon, newest first."""
        params = Params()
        sql = f"SELECT cursor, body FROM events WHERE store_id = {params.add(store_id)}"
        if kinds:
            sql += f" AND kind = ANY({params.add(list(kinds))}::text[])"
        sql += f" AND cursor < {_HORIZON} ORDER BY cursor DESC LIMIT {params.add(limit)}"
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params.values)
        return [TailEvent(r[0], r[1]) for r in rows]

    async def events_after(self, store_id: str, after: int, limit: int) -> list[TailEvent]:
        """Events of a store after a cursor and below the listing horizon, oldest first."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT cursor, body FROM events WHERE store_id = $1 AND cursor > $2"
                f" AND cursor < {_HORIZON} ORDER BY cursor LIMIT $3",
                store_id,
                after,
                limit,
            )
        return [TailEvent(r[0], r[1]) for r in rows]

    async def list_alerts(self, query: AlertQuery) -> tuple[list[AlertRecord], int]:
        """Matching alerts newest first, and the count."""
        params = Params()
        if query.state is None:
            where = ["state IN ('open', 'acknowledged')"]
        else:
            where = [f"state = {params.add(query.state)}"]
        if query.rule is not None:
            where.append(f"rule = {params.add(query.rule)}")
        if query.store_id is not None:
            where.append(f"store_id = {params.add(query.store_id)}")
        clause = " WHERE " + " AND ".join(where)
        filters = list(params.values)
        page = f" ORDER BY alert_id DESC LIMIT {params.add(query.limit)}"
        page += f" OFFSET {params.add(query.offset)}"
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {ALERT_COLUMNS} FROM console_alerts{clause}{page}", *params.values
            )
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM console_alerts{clause}", *filters
            )
        return [alert_from_row(r) for r in rows], total

    async def acknowledge_alert(self, alert_id: int, username: str, now: datetime) -> bool:
        """Open → acknowledged."""
        async with self._connection() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE console_alerts SET state = 'acknowledged', acknowledged_at = $2,"
                " acknowledged_by = $3 WHERE alert_id = $1 AND state = 'open' RETURNING true",
                alert_id,
                now,
                username,
            )
            if done:
                await rollup.bump(conn, "alerts_version")
        return bool(done)

    async def live_version(self) -> tuple[int, int, int]:
        """(fleet, alerts, events) change counters."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT key, value FROM console_meta"
                " WHERE key IN ('fleet_version', 'alerts_version', 'events_cursor')"
            )
        values: dict[str, int] = {row["key"]: row["value"] for row in rows}
        return values["fleet_version"], values["alerts_version"], values["events_cursor"]

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        # The one place database errors become StorageError (and a dry pool Overloaded).
        if self._closed:
            raise StorageError("storage is closed")
        try:
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except TimeoutError as exc:
            raise Overloaded("busy: no console database connection free, retry shortly") from exc
        except _DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        try:
            yield conn
        except _DB_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        except BaseException as exc:
            # Cancelled mid-statement: the session may sit in a transaction holding locks.
            # Closing it makes the server roll back; it is never pooled again. An error of
            # ours (UsageError) left the connection clean: its transaction has rolled back.
            if not isinstance(exc, Exception):
                conn.terminate()
            raise
        finally:
            await self._pool.release(conn)
