"""`ConsoleStorage` on PostgreSQL: the console tables of 0003_console.sql, on a pool of its own.

Its own small pool, not the ingest one: a fleet page at 100,000 stores or an evaluator round
then never holds a connection an agent's batch is waiting for (ingest answers 503 after
its acquire timeout without one), and the console's load cannot grow past CONSOLE_POOL_SIZE.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from cloud.errors import UsageError
from cloud.storage.console import (
    AlertChanges,
    AlertQuery,
    AlertRecord,
    AlertThresholds,
    DeviceRecord,
    FleetPage,
    FleetQuery,
    FleetRow,
    HourlyCount,
    ScanExample,
    ScanStats,
    StatusChange,
    StoreSeries,
    TailEvent,
)
from cloud.storage.postgres import console_rollup as rollup
from cloud.storage.postgres._ingest import CURSOR_SHIFT
from cloud.storage.postgres._migrate import migrate
from cloud.storage.postgres._pool import open_pool
from cloud.storage.postgres._sql import VISIBLE_HORIZON, Params
from cloud.storage.postgres.console_accounts import PostgresConsoleAccounts
from cloud.storage.postgres.console_sql import (
    ALERT_COLUMNS,
    FLEET_COLUMNS,
    TOTALS_SQL,
    alert_from_row,
    cutoffs,
    day_number,
    fleet_order,
    fleet_row,
    fleet_where,
    hour_floor,
    totals_from_row,
)

# Connections per replica: one for the evaluator, the rest for pages and the live poller.
CONSOLE_POOL_SIZE = 4
# Tail reads stop below the listing horizon (0002_events.sql), so a cursor the page hands to
# the live view never jumps over an event that commits later with a smaller cursor.
_HORIZON = VISIBLE_HORIZON.format(shift=CURSOR_SHIFT)
# The counted kinds of `kind_series` -> their column of console_hourly.
_SERIES_COLUMNS = {"coupon.redeemed": "redemptions", "scan": "scans", "events": "events"}
_HOURLY_KINDS = ("events", "scan", "unrecognised", "coupon.redeemed")


class PostgresConsoleStorage(PostgresConsoleAccounts):
    """Console tables in the PostgreSQL database; open with `await …open(url)`."""

    @classmethod
    async def open(cls, url: str, pool_size: int = CONSOLE_POOL_SIZE) -> "PostgresConsoleStorage":
        """Connect and apply pending migrations (the console's among them); StorageError if not."""
        # No JIT: a roll-up over the whole fleet is costed high enough to trigger it, and
        # compiling took longer (0.5 s) than running the statement.
        settings = {"application_name": "storeedge-console", "jit": "off"}
        pool = await open_pool(url, pool_size, settings)
        storage = cls(pool)
        try:
            async with storage._connection() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return storage

    # --- background work (any replica, serialized in console_rollup) ----------------

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
