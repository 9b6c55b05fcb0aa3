"""The console's background work on PostgreSQL: roll-up from heartbeats and events, alerts.

Each function is one transaction that first locks its own `console_meta` row FOR UPDATE and
reads its watermark there: two replicas running it at once take turns, and the second (READ
COMMITTED: every later statement has a fresh snapshot) starts from what the first committed,
so no event is counted twice and no alert opened twice. Every multi-row write to
`console_fleet` goes in store_id order, so the three jobs never deadlock on its rows.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cloud.storage._console_rollup import EXAMPLES_PER_DEVICE, REFRESH_OVERLAP_US, RULES_SQL
from cloud.storage.console import AlertChanges, AlertThresholds
from cloud.storage.postgres._ingest import CURSOR_SHIFT
from cloud.storage.postgres._sql import VISIBLE_HORIZON
from cloud.storage.postgres._types import Conn
from cloud.storage.postgres.console_sql import day_number, from_us, hour_floor, to_us

_REFRESH_OVERLAP = timedelta(microseconds=REFRESH_OVERLAP_US)
_EXAMPLE_TEXT_LEN = 200
_REFUSAL_TEXT_LEN = 300
# A JSON number PostgreSQL may cast to bigint (Python's int, as SQLite's `_int` takes it).
_JSON_INT = "'^-?[0-9]{1,18}$'"


async def lock_meta(conn: Conn, key: str) -> int:
    """Lock one `console_meta` row until the transaction ends; its value."""
    value: int = await conn.fetchval(
        "SELECT value FROM console_meta WHERE key = $1 FOR UPDATE", key
    )
    return value


async def bump(conn: Conn, *keys: str) -> None:
    """Increment change counters the live views poll (in key order: one lock order)."""
    await conn.execute(
        "UPDATE console_meta SET value = value + 1 WHERE key = ANY($1::text[])", sorted(keys)
    )


# --- fleet roll-up from the agents table ---------------------------------------------------

# agents.heartbeat_at has no index (0001_fleet.sql keeps heartbeats HOT): one sequential scan
# per round finds what changed, cheaper at fleet scale than an index write per heartbeat.
_CHANGED = """
    SELECT store_id, greatest(heartbeat_at, enrolled_at, revoked_at) AS at FROM agents
    WHERE heartbeat_at > $1 OR enrolled_at > $1 OR revoked_at > $1
"""
# EXCEPT, not NOT EXISTS: a set operation is hashed or merged, never the nested loop the
# planner picks for an anti-join when its statistics still say console_fleet is empty.
_MISSING = "SELECT store_id FROM stores EXCEPT SELECT store_id FROM console_fleet"
# The active agents, with the parts of their latest heartbeat the roll-up reads; JSON of the
# wrong type reads as absent, as the SQLite roll-up's checks do. NOT MATERIALIZED: a view
# inlined into each use, so a use for one store is an index lookup on agents_store. (No
# `store_id = ANY($1)` in it: that index condition would rescan the array on every lookup.)
_LIVE = f"""
    live AS NOT MATERIALIZED (
        SELECT a.store_id, a.agent_id, a.heartbeat_at, a.backlog_events,
               a.oldest_unsynced_age_s AS age_s,
               coalesce(a.heartbeat_at, a.enrolled_at) AS seen, h.hb,
               CASE WHEN jsonb_typeof(h.hb -> 'config_error') = 'object' THEN left(
                   CASE WHEN h.hb #>> '{{config_error,settings_version}}' ~ {_JSON_INT}
                             AND jsonb_typeof(h.hb #> '{{config_error,settings_version}}')
                                 = 'number'
                        THEN 'settings v' || (h.hb #>> '{{config_error,settings_version}}')
                        ELSE 'a config' END
                   || ': ' || coalesce(nullif(h.hb #>> '{{config_error,reason}}', ''),
                                       'no reason given'),
                   {_REFUSAL_TEXT_LEN}) END AS refused
        FROM agents a
        CROSS JOIN LATERAL (SELECT CASE WHEN a.heartbeat_at IS NOT NULL
                                         AND jsonb_typeof(a.heartbeat) = 'object'
                                        THEN a.heartbeat END AS hb) h
        WHERE a.revoked_at IS NULL
    ), devices AS NOT MATERIALIZED (
        SELECT DISTINCT ON (l.store_id, d.el ->> 'device_id')
               l.store_id, d.el ->> 'device_id' AS device_id, l.agent_id,
               coalesce(d.el ->> 'kind', '') AS kind, coalesce(d.el ->> 'state', '') AS state,
               coalesce(d.el ->> 'condition', '') AS condition,
               CASE WHEN jsonb_typeof(d.el -> 'detail') = 'string'
                    THEN d.el ->> 'detail' END AS detail,
               l.heartbeat_at AS updated_at
        FROM live l CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(l.hb -> 'devices') = 'array' THEN l.hb -> 'devices'
                 ELSE '[]'::jsonb END) WITH ORDINALITY AS d(el, ord)
        WHERE jsonb_typeof(d.el) = 'object' AND jsonb_typeof(d.el -> 'device_id') = 'string'
        -- A device two agents report is the one of the latest heartbeat, the last in its list.
        ORDER BY l.store_id, d.el ->> 'device_id', l.heartbeat_at DESC, l.agent_id, d.ord DESC
    )
"""
# The rolled-up statements go store by store (LATERAL, so each use of the views above is an
# index lookup on agents_store), never as joins the planner might run as nested loops over
# a whole scan when its row estimates are stale, as they are right after a first fill.
#
# Devices are upserted, not deleted and re-inserted (an unchanged device is a HOT update),
# each stamped with this transaction's id; _DROP_DEVICES then removes the stores' devices
# the stamp missed: the ones no heartbeat reports any more.
_ROUND = "pg_current_xact_id()::text::bigint"
_UPSERT_DEVICES = f"""
    WITH {_LIVE}
    INSERT INTO console_devices AS c (store_id, device_id, agent_id, kind, state, condition,
                                      detail, updated_at, refreshed_in)
    SELECT d.*, {_ROUND} FROM unnest($1::text[]) AS s(store_id)
    CROSS JOIN LATERAL (SELECT * FROM devices WHERE devices.store_id = s.store_id) d
    ORDER BY d.store_id, d.device_id
    ON CONFLICT (store_id, device_id) DO UPDATE SET
        agent_id = excluded.agent_id, kind = excluded.kind, state = excluded.state,
        condition = excluded.condition, detail = excluded.detail,
        updated_at = excluded.updated_at, refreshed_in = excluded.refreshed_in
"""
_DROP_DEVICES = f"""
    DELETE FROM console_devices
    WHERE store_id = ANY($1::text[]) AND refreshed_in <> {_ROUND}
"""
_UPSERT_FLEET = f"""
    WITH {_LIVE}
    INSERT INTO console_fleet AS f (store_id, agents, last_seen_at, backlog_events,
        oldest_unsynced_at, device_faults, dead_letters, version, clock_offset_s,
        config_refused)
    SELECT s.store_id, r.agents, r.seen, r.backlog, r.oldest, df.faults, r.dead,
           left(coalesce(x.hb ->> 'version', ''), 64),
           CASE WHEN jsonb_typeof(x.hb -> 'clock_offset_s') = 'number'
                THEN (x.hb ->> 'clock_offset_s')::float8 END,
           r.refused
    FROM unnest($1::text[]) AS s(store_id)
    CROSS JOIN LATERAL (
        SELECT count(*) AS agents, max(l.seen) AS seen,
               coalesce(sum(l.backlog_events), 0) AS backlog,
               min(l.heartbeat_at - make_interval(secs => l.age_s)) FILTER (
                   WHERE l.hb IS NOT NULL AND l.age_s IS NOT NULL AND l.backlog_events > 0
               ) AS oldest,
               coalesce(sum((l.hb ->> 'dead_letters')::bigint) FILTER (
                   WHERE jsonb_typeof(l.hb -> 'dead_letters') = 'number'
                     AND l.hb ->> 'dead_letters' ~ {_JSON_INT}
               ), 0) AS dead,
               (array_agg(l.refused ORDER BY l.agent_id)
                    FILTER (WHERE l.refused IS NOT NULL))[1] AS refused
        FROM live l WHERE l.store_id = s.store_id
    ) r
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.state <> 'online') AS faults
        FROM devices d WHERE d.store_id = s.store_id
    ) df
    LEFT JOIN LATERAL (
        SELECT l.hb FROM live l WHERE l.store_id = s.store_id AND l.hb IS NOT NULL
        ORDER BY l.heartbeat_at DESC, l.agent_id LIMIT 1
    ) x ON true
    ORDER BY s.store_id
    ON CONFLICT (store_id) DO UPDATE SET
        agents = excluded.agents, last_seen_at = excluded.last_seen_at,
        backlog_events = excluded.backlog_events,
        oldest_unsynced_at = excluded.oldest_unsynced_at,
        device_faults = excluded.device_faults, dead_letters = excluded.dead_letters,
        version = excluded.version, clock_offset_s = excluded.clock_offset_s,
        config_refused = excluded.config_refused
"""


async def refresh_fleet(conn: Conn) -> int:
    """Fold agents changed since the watermark (and new stores) into the roll-up."""
    async with conn.transaction():
        mark = await lock_meta(conn, "heartbeat_mark")
        since = from_us(mark) - _REFRESH_OVERLAP
        changed = await conn.fetch(_CHANGED, since)
        stores = {row["store_id"] for row in changed}
        stores.update(row["store_id"] for row in await conn.fetch(_MISSING))
        if not stores:
            return 0
        ordered = sorted(stores)
        await conn.execute(_UPSERT_DEVICES, ordered)
        await conn.execute(_DROP_DEVICES, ordered)
        await conn.execute(_UPSERT_FLEET, ordered)
        newest = max((to_us(row["at"]) for row in changed), default=mark)
        await conn.execute(
            "UPDATE console_meta SET value = $1 WHERE key = 'heartbeat_mark'", max(mark, newest)
        )
        await bump(conn, "fleet_version")
    return len(stores)


# --- event counts ----------------------------------------------------------------------------

# The next events after the cursor, only below the listing horizon (0002_events.sql): a row a
# still-open transaction commits later always has a cursor above it, so moving the watermark
# to the last row taken never skips one. Everything is counted in one statement.
_AGGREGATE = f"""
WITH ev AS MATERIALIZED (
    SELECT cursor, store_id, device_id, kind, least(occurred_at, received_at) AS at,
           CASE WHEN kind = 'scan' THEN body::jsonb -> 'payload' END AS p
    FROM events
    WHERE cursor > $1 AND cursor < {VISIBLE_HORIZON.format(shift=CURSOR_SHIFT)}
    ORDER BY cursor LIMIT $2
), counted AS MATERIALIZED (
    SELECT *, date_trunc('hour', at, 'UTC') AS hour,
           kind = 'scan' AND p ->> 'classification' = 'unrecognised' AS bad
    FROM ev
), hourly AS (
    INSERT INTO console_hourly AS h (store_id, hour, events, scans, unrecognised, redemptions)
    SELECT store_id, hour, count(*), count(*) FILTER (WHERE kind = 'scan'),
           count(*) FILTER (WHERE bad), count(*) FILTER (WHERE kind = 'coupon.redeemed')
    FROM counted GROUP BY store_id, hour ORDER BY store_id, hour
    ON CONFLICT (store_id, hour) DO UPDATE SET
        events = h.events + excluded.events, scans = h.scans + excluded.scans,
        unrecognised = h.unrecognised + excluded.unrecognised,
        redemptions = h.redemptions + excluded.redemptions
), device_hourly AS (
    INSERT INTO console_device_hourly AS h (store_id, device_id, hour, scans, unrecognised)
    SELECT store_id, device_id, hour, count(*), count(*) FILTER (WHERE bad)
    FROM counted WHERE kind = 'scan'
    GROUP BY store_id, device_id, hour ORDER BY store_id, device_id, hour
    ON CONFLICT (store_id, device_id, hour) DO UPDATE SET
        scans = h.scans + excluded.scans, unrecognised = h.unrecognised + excluded.unrecognised
), fleet AS (
    INSERT INTO console_fleet AS f (store_id, last_event_at, events_day, events_today)
    SELECT store_id, max(at), $3,
           count(*) FILTER (WHERE (at AT TIME ZONE 'UTC')::date - '1970-01-01'::date = $3)
    FROM counted GROUP BY store_id ORDER BY store_id
    ON CONFLICT (store_id) DO UPDATE SET
        last_event_at = greatest(f.last_event_at, excluded.last_event_at),
        events_today = CASE WHEN f.events_day = excluded.events_day
                            THEN f.events_today + excluded.events_today
                            ELSE excluded.events_today END,
        events_day = excluded.events_day
), examples AS (
    INSERT INTO console_scan_examples (cursor, store_id, device_id, occurred_at, text,
                                       symbology, reason)
    SELECT cursor, store_id, device_id, at, left(coalesce(p ->> 'text', ''), {_EXAMPLE_TEXT_LEN}),
           p ->> 'symbology', p ->> 'reason'
    FROM counted WHERE bad ORDER BY cursor
    ON CONFLICT (cursor) DO NOTHING
)
SELECT count(*) AS taken, max(cursor) AS last,
       array_agg(DISTINCT store_id) FILTER (WHERE bad) AS ex_stores
FROM counted
"""
# Keep the newest EXAMPLES_PER_DEVICE unrecognised scans of each device of the stores in $1.
_TRIM_EXAMPLES = """
    DELETE FROM console_scan_examples e USING (
        SELECT cursor, row_number() OVER (PARTITION BY store_id, device_id
                                          ORDER BY cursor DESC) AS n
        FROM console_scan_examples WHERE store_id = ANY($1::text[])
    ) old
    WHERE e.cursor = old.cursor AND old.n > $2
"""


async def aggregate_events(conn: Conn, now: datetime, max_events: int) -> int:
    """Count the next events after the cursor into hourly, device and fleet counters."""
    today = day_number(now)
    async with conn.transaction():
        cursor = await lock_meta(conn, "events_cursor")
        if await conn.fetchval("SELECT value FROM console_meta WHERE key = 'events_day'") != today:
            # A new UTC day: yesterday's counts are not today's (rows locked in store order).
            await conn.execute(
                "UPDATE console_fleet SET events_today = 0, events_day = $1 WHERE store_id IN"
                " (SELECT store_id FROM console_fleet WHERE events_today > 0 AND events_day < $1"
                " ORDER BY store_id FOR UPDATE)",
                today,
            )
            await conn.execute("UPDATE console_meta SET value = $1 WHERE key = 'events_day'", today)
        row = await conn.fetchrow(_AGGREGATE, cursor, max_events, today)
        assert row is not None  # an aggregate always returns a row
        if not row["taken"]:
            return 0
        if row["ex_stores"]:
            await conn.execute(_TRIM_EXAMPLES, row["ex_stores"], EXAMPLES_PER_DEVICE)
        await conn.execute(
            "UPDATE console_meta SET value = $1 WHERE key = 'events_cursor'", row["last"]
        )
    taken: int = row["taken"]
    return taken


# --- alert rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgRule:
    """What fires now for one rule: rows of (store_id, device_id, *facts) for its summary."""

    sql: str
    params: tuple[str, ...] = ()  # names of `_rule_params` values, in $n order


def _device_condition(kind: str, condition: str) -> PgRule:
    return PgRule(
        "SELECT store_id, device_id, detail FROM console_devices"
        f" WHERE kind = '{kind}' AND condition = '{condition}'"
    )


# The same rules as the SQLite backend's RULES_SQL (whose summaries word the alerts on both).
RULES: dict[str, PgRule] = {
    "agent_offline": PgRule(
        "SELECT store_id, '', last_seen_at FROM console_fleet"
        " WHERE agents > 0 AND last_seen_at < $1",
        ("offline_cut",),
    ),
    "backlog_age": PgRule(
        "SELECT store_id, '', backlog_events FROM console_fleet"
        " WHERE oldest_unsynced_at < $1 AND backlog_events > 0",
        ("backlog_cut",),
    ),
    "printer_paper_out": _device_condition("printer", "paper_out"),
    "printer_cover_open": _device_condition("printer", "cover_open"),
    "scanner_disconnected": PgRule(
        "SELECT store_id, device_id, condition FROM console_devices"
        " WHERE kind = 'scanner' AND state = 'offline'"
    ),
    "unrecognised_scans": PgRule(
        "SELECT store_id, device_id, sum(unrecognised)::bigint, sum(scans)::bigint"
        " FROM console_device_hourly WHERE hour >= $1 GROUP BY store_id, device_id"
        " HAVING sum(scans) >= $2 AND sum(unrecognised) > $3 * sum(scans)",
        ("window_start", "min_scans", "ratio"),
    ),
    "config_refused": PgRule(
        "SELECT store_id, '', config_refused FROM console_fleet WHERE config_refused IS NOT NULL"
    ),
    "dead_letters": PgRule(
        "SELECT store_id, '', dead_letters FROM console_fleet WHERE dead_letters > 0"
    ),
}


def _rule_params(t: AlertThresholds, now: datetime) -> dict[str, Any]:
    return {
        "offline_cut": now - timedelta(seconds=t.agent_offline_s),
        "backlog_cut": now - timedelta(seconds=t.backlog_age_s),
        # Whole hours: the window starts at the hour boundary as far back as now is into its own.
        "window_start": now - timedelta(seconds=t.unrecognised_window_s) - (now - hour_floor(now)),
        "min_scans": t.unrecognised_min_scans,
        "ratio": t.unrecognised_ratio,
    }


async def evaluate_alerts(conn: Conn, thresholds: AlertThresholds, now: datetime) -> AlertChanges:
    """Open what fires and is not active, resolve what is active and no longer fires."""
    values = _rule_params(thresholds, now)
    async with conn.transaction():
        await lock_meta(conn, "evaluated_at")
        firing: dict[tuple[str, str, str], str] = {}
        for rule, spec in RULES.items():
            summary = RULES_SQL[rule].summary
            for row in await conn.fetch(spec.sql, *(values[name] for name in spec.params)):
                firing[rule, row[0], row[1]] = summary(tuple(row), thresholds)
        active = {
            (r["rule"], r["store_id"], r["device_id"]): r["alert_id"]
            for r in await conn.fetch(
                "SELECT alert_id, rule, store_id, device_id FROM console_alerts"
                " WHERE state IN ('open', 'acknowledged')"
            )
        }
        new = sorted(key for key in firing if key not in active)
        gone = sorted(active[key] for key in active if key not in firing)
        # DO NOTHING: the partial unique index is the last word on "one active alert".
        opened = await conn.fetch(
            "INSERT INTO console_alerts (rule, store_id, device_id, state, summary, opened_at)"
            " SELECT rule, store_id, device_id, 'open', summary, $5"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " AS n(rule, store_id, device_id, summary)"
            " ON CONFLICT (rule, store_id, device_id) WHERE state <> 'resolved' DO NOTHING"
            " RETURNING store_id",
            [k[0] for k in new],
            [k[1] for k in new],
            [k[2] for k in new],
            [firing[k] for k in new],
            now,
        )
        resolved = await conn.fetch(
            "UPDATE console_alerts SET state = 'resolved', resolved_at = $2"
            " WHERE alert_id = ANY($1::bigint[]) AND state <> 'resolved' RETURNING store_id",
            gone,
            now,
        )
        await _count_active(conn, {r[0] for r in opened} | {r[0] for r in resolved})
        await conn.execute(
            "UPDATE console_meta SET value = $1 WHERE key = 'evaluated_at'", to_us(now)
        )
        if opened or resolved:
            await bump(conn, "alerts_version", "fleet_version")
    return AlertChanges(opened=len(opened), resolved=len(resolved))


async def _count_active(conn: Conn, stores: Iterable[str]) -> None:
    ordered = sorted(stores)
    if not ordered:
        return
    # Counted in one grouped statement and written from arrays: no per-store subquery the
    # planner could run as a scan of all alerts when its statistics are stale.
    rows = await conn.fetch(
        "SELECT store_id, count(*) FROM console_alerts"
        " WHERE store_id = ANY($1::text[]) AND state IN ('open', 'acknowledged')"
        " GROUP BY store_id",
        ordered,
    )
    counts: dict[str, int] = {row[0]: row[1] for row in rows}
    await conn.execute(
        "INSERT INTO console_fleet AS f (store_id, active_alerts)"
        " SELECT * FROM unnest($1::text[], $2::integer[]) ORDER BY 1"
        " ON CONFLICT (store_id) DO UPDATE SET active_alerts = excluded.active_alerts",
        ordered,
        [counts.get(store, 0) for store in ordered],
    )


async def prune(conn: Conn, before: datetime, now: datetime) -> None:
    """Drop counts and resolved alerts older than `before`, and dead sessions."""
    async with conn.transaction():
        await conn.execute("DELETE FROM console_hourly WHERE hour < $1", before)
        await conn.execute("DELETE FROM console_device_hourly WHERE hour < $1", before)
        await conn.execute(
            "DELETE FROM console_alerts WHERE resolved_at IS NOT NULL AND resolved_at < $1",
            before,
        )
        await conn.execute("DELETE FROM console_sessions WHERE expires_at < $1", now)
