"""SQL of the PostgreSQL console: fleet list filters and sorts, row mapping, time helpers."""

from datetime import UTC, datetime, timedelta

import asyncpg

from cloud.storage.console import (
    AlertRecord,
    FleetQuery,
    FleetRow,
    FleetThresholds,
    FleetTotals,
    UserRecord,
)
from cloud.storage.postgres._sql import Params

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

FLEET_COLUMNS = (
    "store_id, agents, last_seen_at, backlog_events, oldest_unsynced_at, device_faults,"
    " dead_letters, version, clock_offset_s, last_event_at, events_today, active_alerts, events_day"
)
# Sort key -> ORDER BY column; each has an index of 0003_console.sql that ends in store_id.
# The NULL placement is the index's, so a backward index scan serves the descending sort.
SORT_SQL: dict[str, tuple[str, str]] = {
    "store": ("store_id", ""),
    "seen": ("last_seen_at", ""),
    "backlog": ("backlog_events", ""),
    "oldest": ("oldest_unsynced_at", ""),
    "faults": ("device_faults", ""),
    "last_event": ("last_event_at", " NULLS FIRST"),
    "events_today": ("events_today", ""),
    "alerts": ("active_alerts", ""),
}
_FLIPPED = {"": "", " NULLS FIRST": " NULLS LAST"}
USER_COLUMNS = "user_id, username, role, created_at, disabled_at"
ALERT_COLUMNS = (
    "alert_id, rule, store_id, device_id, state, summary, opened_at, acknowledged_at,"
    " acknowledged_by, resolved_at"
)
TOTALS_SQL = """
    SELECT count(*),
           count(*) FILTER (WHERE last_seen_at >= $1),
           count(*) FILTER (WHERE last_seen_at < $1 AND last_seen_at >= $2),
           count(*) FILTER (WHERE last_seen_at < $2),
           count(*) FILTER (WHERE last_seen_at IS NULL),
           count(*) FILTER (WHERE device_faults > 0),
           count(*) FILTER (WHERE backlog_events > 0),
           count(*) FILTER (WHERE active_alerts > 0),
           coalesce(sum(backlog_events), 0),
           coalesce(sum(events_today) FILTER (WHERE events_day = $3), 0)
    FROM console_fleet
"""


def to_us(value: datetime) -> int:
    """Unix microseconds of an aware datetime, exactly (the console_meta encoding)."""
    return (value - _EPOCH) // _US


def from_us(value: int) -> datetime:
    """The aware UTC datetime of unix microseconds."""
    return _EPOCH + timedelta(microseconds=value)


def day_number(moment: datetime) -> int:
    """Days since 1970-01-01 of a moment's UTC date (the events_day encoding)."""
    return to_us(moment) // (86_400 * 1_000_000)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour a moment falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def cutoffs(thresholds: FleetThresholds) -> tuple[datetime, datetime]:
    """(stale, offline) cut-offs: seen before the first is stale, before the second offline."""
    now = thresholds.now
    return (
        now - timedelta(seconds=thresholds.stale_after_s),
        now - timedelta(seconds=thresholds.offline_after_s),
    )


def fleet_where(query: FleetQuery, params: Params) -> str:
    """The WHERE clause (possibly empty) of the query's filters, parameters into `params`."""
    stale_cut, offline_cut = cutoffs(query.thresholds)
    where: list[str] = []
    if query.search:
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # ILIKE: SQLite's LIKE ignores ASCII case, and so must the search on this backend.
        where.append(f"store_id ILIKE {params.add(f'%{escaped}%')}")
    if query.status == "online":
        where.append(f"last_seen_at >= {params.add(stale_cut)}")
    elif query.status == "stale":
        where.append(
            f"last_seen_at < {params.add(stale_cut)} AND last_seen_at >= {params.add(offline_cut)}"
        )
    elif query.status == "offline":
        where.append(f"last_seen_at < {params.add(offline_cut)}")
    elif query.status == "no_agent":
        where.append("last_seen_at IS NULL")
    if query.faults:
        where.append("device_faults > 0")
    if query.backlog:
        where.append("backlog_events > 0")
    if query.alerts:
        where.append("active_alerts > 0")
    return (" WHERE " + " AND ".join(where)) if where else ""


def fleet_order(query: FleetQuery, params: Params) -> str:
    """ORDER BY … LIMIT … OFFSET …; the tie-break on store_id runs the same way as the key."""
    column, nulls = SORT_SQL[query.sort]
    direction = "DESC" if query.descending else "ASC"
    if query.descending:
        nulls = _FLIPPED[nulls]
    limit, offset = params.add(query.limit), params.add(query.offset)
    if query.sort == "store":
        return f" ORDER BY store_id {direction} LIMIT {limit} OFFSET {offset}"
    return (
        f" ORDER BY {column} {direction}{nulls}, store_id {direction} LIMIT {limit} OFFSET {offset}"
    )


def totals_from_row(row: asyncpg.Record) -> FleetTotals:
    """A `TOTALS_SQL` row as a record."""
    return FleetTotals(*(int(v) for v in row))


def fleet_row(row: asyncpg.Record, today: int) -> FleetRow:
    """A `FLEET_COLUMNS` row as a record; a count of an earlier day reads as 0 today."""
    return FleetRow(
        store_id=row["store_id"],
        agents=row["agents"],
        last_seen_at=row["last_seen_at"],
        backlog_events=row["backlog_events"],
        oldest_unsynced_at=row["oldest_unsynced_at"],
        device_faults=row["device_faults"],
        dead_letters=row["dead_letters"],
        version=row["version"],
        clock_offset_s=row["clock_offset_s"],
        last_event_at=row["last_event_at"],
        events_today=row["events_today"] if row["events_day"] == today else 0,
        active_alerts=row["active_alerts"],
    )


def user_from_row(row: asyncpg.Record) -> UserRecord:
    """A `USER_COLUMNS` row as a record."""
    return UserRecord(
        row["user_id"], row["username"], row["role"], row["created_at"], row["disabled_at"]
    )


def alert_from_row(row: asyncpg.Record) -> AlertRecord:
    """An `ALERT_COLUMNS` row as a record."""
    return AlertRecord(
        alert_id=row["alert_id"],
        rule=row["rule"],
        store_id=row["store_id"],
        device_id=row["device_id"],
        state=row["state"],
        summary=row["summary"],
        opened_at=row["opened_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
    )
