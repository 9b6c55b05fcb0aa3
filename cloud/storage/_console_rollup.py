"""The console's background work on SQLite: roll-up from heartbeats and events, alert rules.

Each function runs on the storage thread and is one write transaction (or a few bounded
ones) that reads its own watermark inside the transaction, so two replicas calling it at
once serialize on SQLite's write lock and neither counts a row twice.
"""

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from cloud.storage._sqlite_sql import write
from cloud.storage.console import AlertChanges, AlertThresholds

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US
# Heartbeat times are stamped by whichever replica received them, just before its commit: a
# refresh re-reads this far behind its watermark so a late commit or a replica's clock a little
# behind is still seen. Refreshing a store twice is harmless.
REFRESH_OVERLAP_US = 5 * US
# Stores refreshed per transaction: bounds how long ingest waits on the write lock.
REFRESH_CHUNK = 2000
# Unrecognised scans kept per device for the diagnostics table.
EXAMPLES_PER_DEVICE = 5
_EXAMPLE_TEXT_LEN = 200
_REFUSAL_TEXT_LEN = 300


def meta_get(conn: sqlite3.Connection, key: str, default: int = 0) -> int:
    """One integer of `console_meta`."""
    row = conn.execute("SELECT value FROM console_meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else int(row[0])


def meta_set(conn: sqlite3.Connection, key: str, value: int) -> None:
    """Set one integer of `console_meta`."""
    conn.execute(
        "INSERT INTO console_meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def bump(conn: sqlite3.Connection, key: str) -> None:
    """Increment a change counter the live views poll."""
    meta_set(conn, key, meta_get(conn, key) + 1)


# --- fleet roll-up from the agents table ---------------------------------------------------


def refresh_fleet(conn: sqlite3.Connection, now_us: int) -> int:
    """Fold agents changed since the watermark (and new stores) into the roll-up."""
    with write(conn):
        mark = meta_get(conn, "heartbeat_mark")
        new_mark = max(
            mark,
            *(
                conn.execute(f"SELECT coalesce(max({column}), 0) FROM agents").fetchone()[0]
                for column in ("heartbeat_at", "enrolled_at", "revoked_at")
            ),
        )
        since = mark - REFRESH_OVERLAP_US
        changed = [
            row[0]
            for row in conn.execute(
                "SELECT store_id FROM agents WHERE heartbeat_at > ?1 UNION"
                " SELECT store_id FROM agents WHERE enrolled_at > ?1 UNION"
                " SELECT store_id FROM agents WHERE revoked_at > ?1",
                (since,),
            )
        ]
        added = _add_new_stores(conn)
        meta_set(conn, "heartbeat_mark", new_mark)
    for start in range(0, len(changed), REFRESH_CHUNK):
        with write(conn):
            for store_id in changed[start : start + REFRESH_CHUNK]:
                _refresh_store(conn, store_id, now_us)
    if changed or added:
        with write(conn):
            bump(conn, "fleet_version")
    return len(added.union(changed))


def _add_new_stores(conn: sqlite3.Connection) -> set[str]:
    # count(*) on both tables is cheap; the anti-join runs only when a store is missing.
    stores = conn.execute("SELECT count(*) FROM stores").fetchone()[0]
    rolled = conn.execute("SELECT count(*) FROM console_fleet").fetchone()[0]
    if stores == rolled:
        return set()
    added = conn.execute(
        "INSERT INTO console_fleet (store_id) SELECT store_id FROM stores"
        " WHERE store_id NOT IN (SELECT store_id FROM console_fleet) RETURNING store_id"
    ).fetchall()
    return {row[0] for row in added}


def _refresh_store(conn: sqlite3.Connection, store_id: str, now_us: int) -> None:
    agents = conn.execute(
        "SELECT agent_id, enrolled_at, heartbeat_at, backlog_events, oldest_unsynced_age_s,"
        " heartbeat FROM agents WHERE store_id = ? AND revoked_at IS NULL",
        (store_id,),
    ).fetchall()
    seen: int | None = None
    backlog = dead = 0
    oldest: int | None = None
    version = ""
    offset: float | None = None
    refused: str | None = None
    devices: dict[str, tuple[Any, ...]] = {}
    for agent_id, enrolled_at, hb_at, agent_backlog, age_s, raw in agents:
        agent_seen = hb_at if hb_at is not None else enrolled_at
        latest = seen is None or agent_seen > seen
        seen = agent_seen if latest else seen
        backlog += agent_backlog or 0
        if hb_at is None or raw is None:
            continue
        body = _loads(raw)
        dead += _int(body.get("dead_letters"))
        refused = refused or _refusal(body.get("config_error"))
        if age_s is not None and agent_backlog:
            since = hb_at - int(float(age_s) * US)
            oldest = since if oldest is None else min(oldest, since)
        if latest:
            version = str(body.get("version") or "")[:64]
            clock = body.get("clock_offset_s")
            offset = float(clock) if isinstance(clock, int | float) else None
        for device in body.get("devices") or ():
            if isinstance(device, dict) and isinstance(device.get("device_id"), str):
                devices[device["device_id"]] = (
                    store_id,
                    device["device_id"],
                    agent_id,
                    str(device.get("kind") or ""),
                    str(device.get("state") or ""),
                    str(device.get("condition") or ""),
                    device.get("detail") if isinstance(device.get("detail"), str) else None,
                    hb_at,
                )
    faults = sum(1 for d in devices.values() if d[4] != "online")
    conn.execute(
        "INSERT INTO console_fleet (store_id, agents, last_seen_at, backlog_events,"
        " oldest_unsynced_at, device_faults, dead_letters, version, clock_offset_s,"
        " config_refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store_id) DO UPDATE SET"
        " agents = excluded.agents, last_seen_at = excluded.last_seen_at,"
        " backlog_events = excluded.backlog_events,"
        " oldest_unsynced_at = excluded.oldest_unsynced_at,"
        " device_faults = excluded.device_faults, dead_letters = excluded.dead_letters,"
        " version = excluded.version, clock_offset_s = excluded.clock_offset_s,"
        " config_refused = excluded.config_refused",
        (store_id, len(agents), seen, backlog, oldest, faults, dead, version, offset, refused),
    )
    conn.execute("DELETE FROM console_devices WHERE store_id = ?", (store_id,))
    conn.executemany(
        "INSERT INTO console_devices (store_id, device_id, agent_id, kind, state, condition,"
        " detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        devices.values(),
    )


def _loads(raw: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _refusal(error: Any) -> str | None:
    """The heartbeat's `config_error` (protocol.settings.ConfigRefusal) in words, or None."""
    if not isinstance(error, dict):
        return None
    version = error.get("settings_version")
    what = f"settings v{version}" if isinstance(version, int) else "a config"
    reason = error.get("reason") or "no reason given"
    return f"{what}: {reason!s}"[:_REFUSAL_TEXT_LEN]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- event counts ----------------------------------------------------------------------------

_EVENT_ROWS = """
    SELECT id, store_id, device_id, kind, min(occurred_at, received_at),
           CASE WHEN kind = 'scan' THEN json_extract(body, '$.payload.classification') END,
           CASE WHEN kind = 'scan'
                 AND json_extract(body, '$.payload.classification') = 'unrecognised'
                THEN json_array(json_extract(body, '$.payload.text'),
                                json_extract(body, '$.payload.symbology'),
                                json_extract(body, '$.payload.reason')) END
    FROM events WHERE id > ? ORDER BY id LIMIT ?
"""


@dataclass(slots=True)
class _Hour:
    events: int = 0
    scans: int = 0
    unrecognised: int = 0
    redemptions: int = 0


def aggregate_events(conn: sqlite3.Connection, now_us: int, max_events: int) -> int:
    """Count the next events after the cursor into hourly, device and fleet counters."""
    today = now_us // DAY_US
    with write(conn):
        if meta_get(conn, "events_day") != today:
            # A new UTC day: yesterday's counts are not today's.
            conn.execute(
                "UPDATE console_fleet SET events_today = 0, events_day = ?"
                " WHERE events_today > 0 AND events_day < ?",
                (today, today),
            )
            meta_set(conn, "events_day", today)
        cursor = meta_get(conn, "events_cursor")
        rows = conn.execute(_EVENT_ROWS, (cursor, max_events)).fetchall()
        if not rows:
            return 0
        hours: dict[tuple[str, int], _Hour] = defaultdict(_Hour)
        device_hours: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        stores: dict[str, list[int]] = {}  # store -> [last_event_at, events today]
        examples: list[tuple[Any, ...]] = []
        for event_id, store_id, device_id, kind, at, classification, example in rows:
            hour = at - at % HOUR_US
            counts = hours[store_id, hour]
            counts.events += 1
            if kind == "scan":
                counts.scans += 1
                device_counts = device_hours[store_id, device_id, hour]
                device_counts[0] += 1
                if classification == "unrecognised":
                    counts.unrecognised += 1
                    device_counts[1] += 1
                    if example is not None:
                        examples.append(_example(event_id, store_id, device_id, at, example))
            elif kind == "coupon.redeemed":
                counts.redemptions += 1
            store = stores.setdefault(store_id, [at, 0])
            store[0] = max(store[0], at)
            if at // DAY_US == today:
                store[1] += 1
        _write_counts(conn, hours, device_hours, stores, today)
        _write_examples(conn, examples)
        meta_set(conn, "events_cursor", rows[-1][0])
    return len(rows)


def _example(cursor: int, store_id: str, device_id: str, at: int, raw: str) -> tuple[Any, ...]:
    text, symbology, reason = orjson.loads(raw)
    return (cursor, store_id, device_id, at, str(text or "")[:_EXAMPLE_TEXT_LEN], symbology, reason)


def _write_counts(
    conn: sqlite3.Connection,
    hours: dict[tuple[str, int], _Hour],
    device_hours: dict[tuple[str, str, int], list[int]],
    stores: dict[str, list[int]],
    today: int,
) -> None:
    conn.executemany(
        "INSERT INTO console_hourly (store_id, hour, events, scans, unrecognised, redemptions)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, hour) DO UPDATE SET"
        " events = events + excluded.events, scans = scans + excluded.scans,"
        " unrecognised = unrecognised + excluded.unrecognised,"
        " redemptions = redemptions + excluded.redemptions",
        [(s, h, c.events, c.scans, c.unrecognised, c.redemptions) for (s, h), c in hours.items()],
    )
    conn.executemany(
        "INSERT INTO console_device_hourly (store_id, device_id, hour, scans, unrecognised)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (store_id, device_id, hour) DO UPDATE SET"
        " scans = scans + excluded.scans, unrecognised = unrecognised + excluded.unrecognised",
        [(s, d, h, c[0], c[1]) for (s, d, h), c in device_hours.items()],
    )
    conn.executemany(
        "INSERT INTO console_fleet (store_id, last_event_at, events_day, events_today)"
        " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (store_id) DO UPDATE SET"
        " last_event_at = max(coalesce(last_event_at, 0), ?2),"
        " events_today = CASE WHEN events_day = ?3 THEN events_today + ?4 ELSE ?4 END,"
        " events_day = ?3",
        [(s, last, today, n) for s, (last, n) in stores.items()],
    )


def _write_examples(conn: sqlite3.Connection, examples: list[tuple[Any, ...]]) -> None:
    if not examples:
        return
    conn.executemany(
        "INSERT INTO console_scan_examples (cursor, store_id, device_id, occurred_at, text,"
        " symbology, reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cursor) DO NOTHING",
        examples,
    )
    for store_id, device_id in {(e[1], e[2]) for e in examples}:
        conn.execute(
            "DELETE FROM console_scan_examples WHERE store_id = ?1 AND device_id = ?2"
            " AND cursor < (SELECT min(cursor) FROM (SELECT cursor FROM console_scan_examples"
            " WHERE store_id = ?1 AND device_id = ?2 ORDER BY cursor DESC LIMIT ?3))",
            (store_id, device_id, EXAMPLES_PER_DEVICE),
        )


# --- alert rules -------------------------------------------------------------------------------

Firing = dict[tuple[str, str], str]  # (store_id, device_id) -> summary


@dataclass(frozen=True, slots=True)
class RuleSql:
    """How one rule finds what fires now: SQL over the roll-up, and its summary text."""

    sql: str
    params: Callable[[AlertThresholds, int], tuple[Any, ...]]
    summary: Callable[[tuple[Any, ...], AlertThresholds], str]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"


def _device_condition(kind: str, condition: str) -> str:
    return (
        "SELECT store_id, device_id, detail FROM console_devices"
        f" WHERE kind = '{kind}' AND condition = '{condition}'"
    )


# Rule names are the keys of cloud.console.rules.RULES (a test pins that they match).
RULES_SQL: dict[str, RuleSql] = {
    "agent_offline": RuleSql(
        "SELECT store_id, '', last_seen_at FROM console_fleet"
        " WHERE agents > 0 AND coalesce(last_seen_at, 9223372036854775807) < ?",
        lambda t, now: (now - int(t.agent_offline_s * US),),
        lambda row, t: f"No heartbeat from the agent for over {_minutes(t.agent_offline_s)}",
    ),
    "backlog_age": RuleSql(
        "SELECT store_id, '', backlog_events FROM console_fleet"
        " WHERE coalesce(oldest_unsynced_at, 9223372036854775807) < ? AND backlog_events > 0",
        lambda t, now: (now - int(t.backlog_age_s * US),),
        lambda row, t: f"{row[2]} events waiting, the oldest for over {_minutes(t.backlog_age_s)}",
    ),
    "printer_paper_out": RuleSql(
        _device_condition("printer", "paper_out"),
        lambda t, now: (),
        lambda row, t: "Printer is out of paper",
    ),
    "printer_cover_open": RuleSql(
        _device_condition("printer", "cover_open"),
        lambda t, now: (),
        lambda row, t: "Printer cover is open",
    ),
    "scanner_disconnected": RuleSql(
        "SELECT store_id, device_id, condition FROM console_devices"
        " WHERE kind = 'scanner' AND state = 'offline'",
        lambda t, now: (),
        lambda row, t: f"Scanner is offline ({row[2] or 'disconnected'})",
    ),
    "unrecognised_scans": RuleSql(
        "SELECT store_id, device_id, sum(unrecognised), sum(scans) FROM console_device_hourly"
        " WHERE hour >= ? GROUP BY store_id, device_id"
        " HAVING sum(scans) >= ? AND sum(unrecognised) > ? * sum(scans)",
        lambda t, now: (
            now - int(t.unrecognised_window_s * US) - (now % HOUR_US),
            t.unrecognised_min_scans,
            t.unrecognised_ratio,
        ),
        lambda row, t: (
            f"{row[2]} of {row[3]} scans unrecognised ({row[2] / row[3]:.0%},"
            f" threshold {t.unrecognised_ratio:.0%})"
        ),
    ),
    "config_refused": RuleSql(
        "SELECT store_id, '', config_refused FROM console_fleet WHERE config_refused IS NOT NULL",
        lambda t, now: (),
        lambda row, t: f"The agent refused {row[2]}",
    ),
    "dead_letters": RuleSql(
        "SELECT store_id, '', dead_letters FROM console_fleet WHERE dead_letters > 0",
        lambda t, now: (),
        lambda row, t: f"{row[2]} events refused by the cloud, kept in the agent's dead letters",
    ),
}


def evaluate_alerts(
    conn: sqlite3.Connection, thresholds: AlertThresholds, now_us: int
) -> AlertChanges:
    """Open what fires and is not active, resolve what is active and no longer fires."""
    # What fires is read outside the write lock (the heavy part at fleet scale, so ingest is
    # not held up by it); what is active is re-read inside it, so the diff applied is exact
    # for that moment and a concurrent evaluator cannot make it open or resolve twice.
    firing: dict[str, Firing] = {
        rule: {
            (row[0], row[1]): spec.summary(tuple(row), thresholds)
            for row in conn.execute(spec.sql, spec.params(thresholds, now_us))
        }
        for rule, spec in RULES_SQL.items()
    }
    opened = resolved = 0
    touched: set[str] = set()
    with write(conn):
        for rule, fires in firing.items():
            active = {
                (store_id, device_id): alert_id
                for alert_id, store_id, device_id in conn.execute(
                    "SELECT alert_id, store_id, device_id FROM console_alerts"
                    " WHERE rule = ? AND state != 'resolved'",
                    (rule,),
                )
            }
            new = [(rule, s, d, summary, now_us) for (s, d), summary in fires.items()
                   if (s, d) not in active]  # fmt: skip
            gone_keys = [key for key in active if key not in fires]
            gone = [(now_us, active[key]) for key in gone_keys]
            # OR IGNORE: the partial unique index is the last word on "one active alert".
            opened += conn.executemany(
                "INSERT OR IGNORE INTO console_alerts (rule, store_id, device_id, state,"
                " summary, opened_at) VALUES (?, ?, ?, 'open', ?, ?)",
                new,
            ).rowcount
            resolved += conn.executemany(
                "UPDATE console_alerts SET state = 'resolved', resolved_at = ?"
                " WHERE alert_id = ? AND state != 'resolved'",
                gone,
            ).rowcount
            touched.update(n[1] for n in new)
            touched.update(key[0] for key in gone_keys)
        _count_active(conn, touched)
        if opened or resolved:
            bump(conn, "alerts_version")
            bump(conn, "fleet_version")
    return AlertChanges(opened=opened, resolved=resolved)


def _count_active(conn: sqlite3.Connection, stores: Iterable[str]) -> None:
    conn.executemany(
        "INSERT INTO console_fleet (store_id, active_alerts) VALUES (?1, (SELECT count(*)"
        " FROM console_alerts WHERE store_id = ?1 AND state != 'resolved'))"
        " ON CONFLICT (store_id) DO UPDATE SET active_alerts = excluded.active_alerts",
        [(s,) for s in stores],
    )


def prune(conn: sqlite3.Connection, before_us: int, now_us: int) -> None:
    """Drop counts and resolved alerts older than `before_us`, and dead sessions."""
    with write(conn):
        conn.execute("DELETE FROM console_hourly WHERE hour < ?", (before_us,))
        conn.execute("DELETE FROM console_device_hourly WHERE hour < ?", (before_us,))
        conn.execute(
            "DELETE FROM console_alerts WHERE resolved_at IS NOT NULL AND resolved_at < ?",
            (before_us,),
        )
        conn.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now_us,))
