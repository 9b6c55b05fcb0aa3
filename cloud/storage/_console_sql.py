"""SQL of the console's fleet list and row mapping (SQLite dialect, plain SQL on indexes)."""

from collections.abc import Sequence
from typing import Any

from cloud.storage._console_schema import NEVER
from cloud.storage._sqlite_sql import maybe_dt, to_us
from cloud.storage.console import (
    AlertRecord,
    FleetQuery,
    FleetRow,
    FleetThresholds,
    FleetTotals,
    UserRecord,
)

FLEET_COLUMNS = (
    "store_id, agents, last_seen_at, backlog_events, oldest_unsynced_at, device_faults,"
    " dead_letters, version, clock_offset_s, last_event_at, events_today, active_alerts, events_day"
)
# Sort key -> ORDER BY expression; each matches an index of `_console_schema` exactly.
SORT_SQL: dict[str, str] = {
    "store": "store_id",
    "seen": f"coalesce(last_seen_at, {NEVER})",
    "backlog": "backlog_events",
    "oldest": f"coalesce(oldest_unsynced_at, {NEVER})",
    "faults": "device_faults",
    "last_event": "coalesce(last_event_at, 0)",
    "events_today": "events_today",
    "alerts": "active_alerts",
}
USER_COLUMNS = "user_id, username, role, created_at, disabled_at"
ALERT_COLUMNS = (
    "alert_id, rule, store_id, device_id, state, summary, opened_at, acknowledged_at,"
    " acknowledged_by, resolved_at"
)


def cutoffs(thresholds: FleetThresholds) -> tuple[int, int]:
    """(stale, offline) cut-offs in unix µs: seen before the first is stale, the second offline."""
    now = to_us(thresholds.now)
    return now - int(thresholds.stale_after_s * 1e6), now - int(thresholds.offline_after_s * 1e6)


def fleet_where(query: FleetQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (possibly empty) and parameters of the query's filters."""
    stale_cut, offline_cut = cutoffs(query.thresholds)
    where: list[str] = []
    params: list[Any] = []
    if query.search:
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("store_id LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if query.status == "online":
        where.append("last_seen_at >= ?")
        params.append(stale_cut)
    elif query.status == "stale":
        where.append("last_seen_at < ? AND last_seen_at >= ?")
        params += [stale_cut, offline_cut]
    elif query.status == "offline":
        where.append("last_seen_at < ?")
        params.append(offline_cut)
    elif query.status == "no_agent":
        where.append("last_seen_at IS NULL")
    if query.faults:
        where.append("device_faults > 0")
    if query.backlog:
        where.append("backlog_events > 0")
    if query.alerts:
        where.append("active_alerts > 0")
    return (" WHERE " + " AND ".join(where)) if where else "", params


def fleet_order(query: FleetQuery) -> str:
    """ORDER BY … LIMIT … OFFSET …; the tie-break on store_id runs the same way as the key."""
    direction = "DESC" if query.descending else "ASC"
    key = SORT_SQL[query.sort]
    if query.sort == "store":
        return f" ORDER BY store_id {direction} LIMIT ? OFFSET ?"
    return f" ORDER BY {key} {direction}, store_id {direction} LIMIT ? OFFSET ?"


TOTALS_SQL = """
    SELECT count(*),
           coalesce(sum(last_seen_at >= ?1), 0),
           coalesce(sum(last_seen_at < ?1 AND last_seen_at >= ?2), 0),
           coalesce(sum(last_seen_at < ?2), 0),
           coalesce(sum(last_seen_at IS NULL), 0),
           coalesce(sum(device_faults > 0), 0),
           coalesce(sum(backlog_events > 0), 0),
           coalesce(sum(active_alerts > 0), 0),
           coalesce(sum(backlog_events), 0),
           coalesce(sum(CASE WHEN events_day = ?3 THEN events_today ELSE 0 END), 0)
    FROM console_fleet
"""


def totals_from_row(row: Sequence[Any]) -> FleetTotals:
    """A `TOTALS_SQL` row as a record."""
    return FleetTotals(*(int(v) for v in row))


def fleet_row(row: Sequence[Any], today: int) -> FleetRow:
    """A `FLEET_COLUMNS` row as a record; a count of an earlier day reads as 0 today."""
    (store_id, agents, seen, backlog, oldest, faults, dead, version, offset, last_event,
     events_today, alerts, events_day) = row  # fmt: skip
    return FleetRow(
        store_id=store_id,
        agents=agents,
        last_seen_at=maybe_dt(seen),
        backlog_events=backlog,
        oldest_unsynced_at=maybe_dt(oldest),
        device_faults=faults,
        dead_letters=dead,
        version=version,
        clock_offset_s=offset,
        last_event_at=maybe_dt(last_event),
        events_today=events_today if events_day == today else 0,
        active_alerts=alerts,
    )


def user_from_row(row: Sequence[Any]) -> UserRecord:
    """A `USER_COLUMNS` row as a record."""
    user_id, username, role, created_at, disabled_at = row
    created = maybe_dt(created_at)
    assert created is not None
    return UserRecord(user_id, username, role, created, maybe_dt(disabled_at))


def alert_from_row(row: Sequence[Any]) -> AlertRecord:
    """An `ALERT_COLUMNS` row as a record."""
    alert_id, rule, store_id, device_id, state, summary, opened, acked, acked_by, resolved = row
    opened_at = maybe_dt(opened)
    assert opened_at is not None
    return AlertRecord(
        alert_id=alert_id,
        rule=rule,
        store_id=store_id,
        device_id=device_id,
        state=state,
        summary=summary,
        opened_at=opened_at,
        acknowledged_at=maybe_dt(acked),
        acknowledged_by=acked_by,
        resolved_at=maybe_dt(resolved),
    )
