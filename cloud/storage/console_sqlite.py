"""`ConsoleStorage` on SQLite: its own connection and thread on the cloud database file.

A second connection (not the ingest one) so a heavy console read never queues behind ingest
batches; WAL lets it read while ingest writes, and its writes wait on `busy_timeout`.
"""

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cloud.errors import UsageError
from cloud.storage import _console_rollup as rollup
from cloud.storage._console_schema import migrate_console
from cloud.storage._console_sql import (
    ALERT_COLUMNS,
    FLEET_COLUMNS,
    TOTALS_SQL,
    USER_COLUMNS,
    alert_from_row,
    cutoffs,
    fleet_order,
    fleet_row,
    fleet_where,
    totals_from_row,
    user_from_row,
)
from cloud.storage._schema import migrate
from cloud.storage._sqlite_sql import BUSY_TIMEOUT_S, from_us, to_us, write
from cloud.storage._thread import SqliteThread
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

# A session's last use is written at most this often: not one write per page view.
SESSION_TOUCH_US = 60 * 1_000_000
_DAY_US = rollup.DAY_US


class SqliteConsoleStorage:
    """Console tables in the SQLite file at `path`; open with `await …open(path)`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = SqliteThread(self._connect, name=f"console-sqlite:{path}")

    @classmethod
    async def open(cls, path: str) -> "SqliteConsoleStorage":
        """Open the file (creating and migrating the fleet and console tables if needed)."""
        if path == ":memory:":
            raise UsageError("the console needs a database file, not sqlite:///:memory:")
        storage = cls(path)
        await storage._thread.async_start()
        return storage

    async def close(self) -> None:
        """Close the connection and stop its thread; idempotent."""
        await self._thread.async_close()

    # --- accounts, sessions, audit -----------------------------------------------------

    async def add_user(
        self, username: str, password_hash: str, role: Role, now: datetime
    ) -> UserRecord:
        """Create an account; UsageError when the name is taken."""
        now_us = to_us(now)

        def work(conn: sqlite3.Connection) -> UserRecord:
            try:
                with write(conn):
                    row = conn.execute(
                        "INSERT INTO console_users (username, password_hash, role, created_at,"
                        f" password_changed_at) VALUES (?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}",
                        (username, password_hash, role, now_us, now_us),
                    ).fetchall()[0]
            except sqlite3.IntegrityError as exc:
                raise UsageError(f"user {username!r} already exists") from exc
            return user_from_row(row)

        return await self._thread.run(work)

    async def user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """The account and its password hash, or None."""

        def work(conn: sqlite3.Connection) -> tuple[UserRecord, str] | None:
            row = conn.execute(
                f"SELECT {USER_COLUMNS}, password_hash FROM console_users WHERE username = ?",
                (username,),
            ).fetchone()
            return None if row is None else (user_from_row(row[:5]), row[5])

        return await self._thread.run(work)

    async def list_users(self) -> list[UserRecord]:
        """Every account by name."""
        sql = f"SELECT {USER_COLUMNS} FROM console_users ORDER BY username"
        return await self._thread.run(lambda c: [user_from_row(r) for r in c.execute(sql)])

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
        now_us = to_us(now)

        def work(conn: sqlite3.Connection) -> UserRecord | None:
            with write(conn):
                row = conn.execute(
                    f"SELECT {USER_COLUMNS} FROM console_users WHERE username = ?", (username,)
                ).fetchone()
                if row is None:
                    return None
                user = user_from_row(row)
                if role is not None:
                    conn.execute(
                        "UPDATE console_users SET role = ? WHERE user_id = ?", (role, user.user_id)
                    )
                if password_hash is not None:
                    conn.execute(
                        "UPDATE console_users SET password_hash = ?, password_changed_at = ?"
                        " WHERE user_id = ?",
                        (password_hash, now_us, user.user_id),
                    )
                if disabled is not None:
                    conn.execute(
                        "UPDATE console_users SET disabled_at = ? WHERE user_id = ?",
                        (now_us if disabled else None, user.user_id),
                    )
                if password_hash is not None or disabled:
                    conn.execute("DELETE FROM console_sessions WHERE user_id = ?", (user.user_id,))
                admins = conn.execute(
                    "SELECT count(*) FROM console_users WHERE role = 'admin'"
                    " AND disabled_at IS NULL"
                ).fetchone()[0]
                if admins == 0 and user.role == "admin":
                    raise UsageError("refused: the console would be left without an active admin")
                row = conn.execute(
                    f"SELECT {USER_COLUMNS} FROM console_users WHERE user_id = ?", (user.user_id,)
                ).fetchone()
            return user_from_row(row)

        return await self._thread.run(work)

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new session."""
        params = (token_hash, user_id, csrf_token, to_us(now), to_us(expires_at), to_us(now))

        def work(conn: sqlite3.Connection) -> None:
            with write(conn):
                conn.execute(
                    "INSERT INTO console_sessions (token_hash, user_id, csrf_token, created_at,"
                    " expires_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                    params,
                )

        await self._thread.run(work)

    async def get_session(
        self, token_hash: str, now: datetime, idle_s: float
    ) -> SessionRecord | None:
        """The live session of an active user, or None."""
        now_us = to_us(now)
        idle_cut = now_us - int(idle_s * 1e6)
        user_cols = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))

        def work(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(
                f"SELECT {user_cols}, s.csrf_token, s.created_at, s.expires_at, s.last_seen_at"
                " FROM console_sessions s JOIN console_users u ON u.user_id = s.user_id"
                " WHERE s.token_hash = ? AND s.expires_at > ? AND s.last_seen_at > ?"
                " AND u.disabled_at IS NULL",
                (token_hash, now_us, idle_cut),
            ).fetchone()
            if row is None:
                return None
            if now_us - row[8] > SESSION_TOUCH_US:
                with write(conn):
                    conn.execute(
                        "UPDATE console_sessions SET last_seen_at = ? WHERE token_hash = ?",
                        (now_us, token_hash),
                    )
            return SessionRecord(user_from_row(row[:5]), row[5], from_us(row[6]), from_us(row[7]))

        return await self._thread.run(work)

    async def delete_session(self, token_hash: str) -> None:
        """End a session."""

        def work(conn: sqlite3.Connection) -> None:
            with write(conn):
                conn.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

        await self._thread.run(work)

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append to the audit log."""
        params = (to_us(entry.at), entry.actor, entry.action, entry.target, entry.detail,
                  entry.remote)  # fmt: skip

        def work(conn: sqlite3.Connection) -> None:
            with write(conn):
                conn.execute(
                    "INSERT INTO console_audit (at, actor, action, target, detail, remote)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    params,
                )

        await self._thread.run(work)

    async def list_audit(self, offset: int, limit: int) -> tuple[list[AuditRecord], int]:
        """Newest first, with the total."""

        def work(conn: sqlite3.Connection) -> tuple[list[AuditRecord], int]:
            rows = conn.execute(
                "SELECT audit_id, at, actor, action, target, detail, remote FROM console_audit"
                " ORDER BY audit_id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            total = conn.execute("SELECT count(*) FROM console_audit").fetchone()[0]
            return [AuditRecord(r[0], AuditEntry(from_us(r[1]), *r[2:])) for r in rows], total

        return await self._thread.run(work)

    # --- background work ---------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take the lease if free or expired, renew it if ours."""
        now_us = to_us(now)
        params = (name, holder, now_us + int(ttl_s * 1e6), now_us)

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                taken: int = conn.execute(
                    "INSERT INTO console_leases (name, holder, expires_at) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                    " expires_at = excluded.expires_at"
                    " WHERE console_leases.holder = ?2 OR console_leases.expires_at <= ?4",
                    params,
                ).rowcount
            return taken == 1

        return await self._thread.run(work)

    async def release_lease(self, name: str, holder: str) -> None:
        """Let another replica take over at once."""

        def work(conn: sqlite3.Connection) -> None:
            with write(conn):
                conn.execute(
                    "DELETE FROM console_leases WHERE name = ? AND holder = ?", (name, holder)
                )

        await self._thread.run(work)

    async def refresh_fleet(self, now: datetime) -> int:
        """Fold changed agents and new stores into the roll-up."""
        now_us = to_us(now)
        return await self._thread.run(lambda conn: rollup.refresh_fleet(conn, now_us))

    async def aggregate_events(self, now: datetime, max_events: int) -> int:
        """Count the next events into the roll-up."""
        now_us = to_us(now)
        return await self._thread.run(lambda c: rollup.aggregate_events(c, now_us, max_events))

    async def evaluate_alerts(self, thresholds: AlertThresholds, now: datetime) -> AlertChanges:
        """Run every rule in one transaction."""
        now_us = to_us(now)
        return await self._thread.run(lambda c: rollup.evaluate_alerts(c, thresholds, now_us))

    async def prune(self, before: datetime, now: datetime) -> None:
        """Drop old counts, resolved alerts and dead sessions."""
        before_us, now_us = to_us(before), to_us(now)
        await self._thread.run(lambda c: rollup.prune(c, before_us, now_us))

    # --- reads --------------------------------------------------------------------------

    async def fleet_page(self, query: FleetQuery) -> FleetPage:
        """One page of stores, the matching count and the totals."""
        where, params = fleet_where(query)
        stale_cut, offline_cut = cutoffs(query.thresholds)
        today = to_us(query.thresholds.now) // _DAY_US
        page_sql = f"SELECT {FLEET_COLUMNS} FROM console_fleet{where}{fleet_order(query)}"

        def work(conn: sqlite3.Connection) -> FleetPage:
            rows = conn.execute(page_sql, [*params, query.limit, query.offset]).fetchall()
            totals = totals_from_row(
                conn.execute(TOTALS_SQL, (stale_cut, offline_cut, today)).fetchone()
            )
            if where:
                matching = conn.execute(
                    f"SELECT count(*) FROM console_fleet{where}", params
                ).fetchone()[0]
            else:
                matching = totals.stores
            return FleetPage([fleet_row(r, today) for r in rows], matching, totals)

        return await self._thread.run(work)

    async def fleet_row(self, store_id: str) -> FleetRow | None:
        """One store's roll-up."""
        today = to_us(datetime.now(UTC)) // _DAY_US

        def work(conn: sqlite3.Connection) -> FleetRow | None:
            row = conn.execute(
                f"SELECT {FLEET_COLUMNS} FROM console_fleet WHERE store_id = ?", (store_id,)
            ).fetchone()
            return None if row is None else fleet_row(row, today)

        return await self._thread.run(work)

    async def store_devices(self, store_id: str) -> list[DeviceRecord]:
        """Current device states."""
        sql = (
            "SELECT device_id, kind, state, condition, detail, updated_at FROM console_devices"
            " WHERE store_id = ? ORDER BY device_id"
        )

        def work(conn: sqlite3.Connection) -> list[DeviceRecord]:
            return [
                DeviceRecord(r[0], r[1], r[2], r[3], r[4], from_us(r[5]))
                for r in conn.execute(sql, (store_id,))
            ]

        return await self._thread.run(work)

    async def status_history(self, store_id: str, limit: int) -> list[StatusChange]:
        """Latest device.status events, newest first."""
        sql = (
            "SELECT id, device_id, occurred_at, json_extract(body, '$.payload.state'),"
            " json_extract(body, '$.payload.condition'), json_extract(body, '$.payload.detail')"
            " FROM events WHERE store_id = ? AND kind = 'device.status' ORDER BY id DESC LIMIT ?"
        )

        def work(conn: sqlite3.Connection) -> list[StatusChange]:
            return [
                StatusChange(r[0], r[1], from_us(r[2]), str(r[3]), str(r[4]), r[5])
                for r in conn.execute(sql, (store_id, limit))
            ]

        return await self._thread.run(work)

    async def scan_stats(self, store_id: str, since: datetime) -> list[ScanStats]:
        """Scans and unrecognised scans per device since `since`."""
        sql = (
            "SELECT device_id, sum(scans), sum(unrecognised) FROM console_device_hourly"
            " WHERE store_id = ? AND hour >= ? GROUP BY device_id ORDER BY device_id"
        )
        params = (store_id, to_us(since) - to_us(since) % rollup.HOUR_US)
        return await self._thread.run(lambda c: [ScanStats(*r) for r in c.execute(sql, params)])

    async def scan_examples(self, store_id: str, limit: int) -> list[ScanExample]:
        """Latest unrecognised scans, newest first."""
        sql = (
            "SELECT cursor, device_id, occurred_at, text, symbology, reason"
            " FROM console_scan_examples WHERE store_id = ? ORDER BY cursor DESC LIMIT ?"
        )

        def work(conn: sqlite3.Connection) -> list[ScanExample]:
            return [
                ScanExample(r[0], r[1], from_us(r[2]), r[3], r[4], r[5])
                for r in conn.execute(sql, (store_id, limit))
            ]

        return await self._thread.run(work)

    async def hourly_counts(self, store_id: str, since: datetime) -> list[HourlyCount]:
        """Events per hour (and scans, unrecognised, redemptions as kinds), oldest first."""
        sql = (
            "SELECT hour, events, scans, unrecognised, redemptions FROM console_hourly"
            " WHERE store_id = ? AND hour >= ? ORDER BY hour"
        )
        params = (store_id, to_us(since))

        def work(conn: sqlite3.Connection) -> list[HourlyCount]:
            out: list[HourlyCount] = []
            for hour, *counts in conn.execute(sql, params):
                at = from_us(hour)
                kinds = ("events", "scan", "unrecognised", "coupon.redeemed")
                out += [HourlyCount(at, k, n) for k, n in zip(kinds, counts, strict=True)]
            return out

        return await self._thread.run(work)

    async def kind_series(self, kind: str, since: datetime, stores: int) -> list[StoreSeries]:
        """Hourly counts of one counted kind for the busiest stores."""
        column = {"coupon.redeemed": "redemptions", "scan": "scans", "events": "events"}.get(kind)
        if column is None:
            raise UsageError(f"no hourly series is kept for kind {kind!r}")
        since_us = to_us(since)
        where = f"hour >= ? AND {column} > 0"

        def work(conn: sqlite3.Connection) -> list[StoreSeries]:
            top = conn.execute(
                f"SELECT store_id, sum({column}) AS n FROM console_hourly WHERE {where}"
                " GROUP BY store_id ORDER BY n DESC, store_id LIMIT ?",
                (since_us, stores),
            ).fetchall()
            series = []
            for store_id, total in top:
                points = conn.execute(
                    f"SELECT hour, {column} FROM console_hourly WHERE store_id = ? AND {where}"
                    " ORDER BY hour",
                    (store_id, since_us),
                ).fetchall()
                series.append(StoreSeries(store_id, total, [(from_us(h), n) for h, n in points]))
            return series

        return await self._thread.run(work)

    async def latest_events(
        self, store_id: str, kinds: Sequence[str] | None, limit: int
    ) -> list[TailEvent]:
        """Latest events of a store, newest first."""
        params: list[Any] = [store_id]
        sql = "SELECT id, body FROM events WHERE store_id = ?"
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params += list(kinds)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return await self._thread.run(lambda c: [TailEvent(*r) for r in c.execute(sql, params)])

    async def events_after(self, store_id: str, after: int, limit: int) -> list[TailEvent]:
        """Events of a store after a cursor, oldest first."""
        sql = "SELECT id, body FROM events WHERE store_id = ? AND id > ? ORDER BY id LIMIT ?"
        params = (store_id, after, limit)
        return await self._thread.run(lambda c: [TailEvent(*r) for r in c.execute(sql, params)])

    async def list_alerts(self, query: AlertQuery) -> tuple[list[AlertRecord], int]:
        """Matching alerts newest first, and the count."""
        # IN, not != 'resolved': the (state, alert_id) index serves both values.
        where = ["state IN ('open', 'acknowledged')"] if query.state is None else ["state = ?"]
        params: list[Any] = [] if query.state is None else [query.state]
        if query.rule is not None:
            where.append("rule = ?")
            params.append(query.rule)
        if query.store_id is not None:
            where.append("store_id = ?")
            params.append(query.store_id)
        clause = " WHERE " + " AND ".join(where)

        def work(conn: sqlite3.Connection) -> tuple[list[AlertRecord], int]:
            rows = conn.execute(
                f"SELECT {ALERT_COLUMNS} FROM console_alerts{clause}"
                " ORDER BY alert_id DESC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
            total = conn.execute(f"SELECT count(*) FROM console_alerts{clause}", params)
            return [alert_from_row(r) for r in rows], total.fetchone()[0]

        return await self._thread.run(work)

    async def acknowledge_alert(self, alert_id: int, username: str, now: datetime) -> bool:
        """Open → acknowledged."""
        params = (to_us(now), username, alert_id)

        def work(conn: sqlite3.Connection) -> bool:
            with write(conn):
                done = conn.execute(
                    "UPDATE console_alerts SET state = 'acknowledged', acknowledged_at = ?,"
                    " acknowledged_by = ? WHERE alert_id = ? AND state = 'open'",
                    params,
                ).rowcount
                if done:
                    rollup.bump(conn, "alerts_version")
            return done == 1

        return await self._thread.run(work)

    async def live_version(self) -> tuple[int, int, int]:
        """(fleet, alerts, events) change counters."""

        def work(conn: sqlite3.Connection) -> tuple[int, int, int]:
            get = rollup.meta_get
            return (
                get(conn, "fleet_version"),
                get(conn, "alerts_version"),
                get(conn, "events_cursor"),
            )

        return await self._thread.run(work)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)  # the console reads the fleet tables, so they must exist first
            migrate_console(conn)
        except BaseException:
            conn.close()
            raise
        return conn
