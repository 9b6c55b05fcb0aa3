"""SQLite schema of the console tables, versioned on its own (`console_meta`, key `schema`).

The console lives in the cloud database beside the fleet registry but migrates separately,
so its migrations never collide with the main list in `_schema.py`. Times are INTEGER unix
microseconds (UTC), as there. Never edit a released migration; append a new one.
"""

import sqlite3

from cloud.storage._schema import _statements

# Larger than any microsecond timestamp: sorts "never" after every real time in an index.
NEVER = 9223372036854775807

CONSOLE_MIGRATIONS: tuple[str, ...] = (
    # 1: accounts, sessions, audit, leases, fleet roll-up, hourly counts, alerts.
    f"""
    CREATE TABLE console_users (
        user_id              INTEGER PRIMARY KEY,
        username             TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash        TEXT NOT NULL,
        role                 TEXT NOT NULL CHECK (role IN ('admin', 'engineer', 'viewer')),
        created_at           INTEGER NOT NULL,
        password_changed_at  INTEGER NOT NULL,
        disabled_at          INTEGER
    );

    -- Keyed by the SHA-256 of the cookie token: a stolen database holds no usable session.
    CREATE TABLE console_sessions (
        token_hash    TEXT PRIMARY KEY,
        user_id       INTEGER NOT NULL REFERENCES console_users(user_id),
        csrf_token    TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX console_sessions_user ON console_sessions(user_id);
    CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);

    CREATE TABLE console_audit (
        audit_id  INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        target    TEXT NOT NULL,
        detail    TEXT NOT NULL,
        remote    TEXT NOT NULL
    );

    CREATE TABLE console_leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- One row per store, maintained by the evaluator from heartbeats and the event log, so
    -- the fleet page filters, sorts and counts 100,000 stores on indexes, never on `events`.
    CREATE TABLE console_fleet (
        store_id            TEXT PRIMARY KEY,
        agents              INTEGER NOT NULL DEFAULT 0,
        last_seen_at        INTEGER,  -- latest heartbeat (else enrollment); NULL: no agent
        backlog_events      INTEGER NOT NULL DEFAULT 0,
        oldest_unsynced_at  INTEGER,            -- heartbeat time minus the reported age
        device_faults       INTEGER NOT NULL DEFAULT 0,
        dead_letters        INTEGER NOT NULL DEFAULT 0,
        version             TEXT NOT NULL DEFAULT '',
        clock_offset_s      REAL,
        last_event_at       INTEGER,
        events_day          INTEGER NOT NULL DEFAULT 0,   -- UTC day number events_today counts
        events_today        INTEGER NOT NULL DEFAULT 0,
        active_alerts       INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    -- One index per sort key, each ending in store_id so pages are stable; the coalesce()
    -- forms put "never" last in ascending order and must match ORDER BY exactly.
    CREATE INDEX console_fleet_seen ON console_fleet(coalesce(last_seen_at, {NEVER}), store_id);
    CREATE INDEX console_fleet_backlog ON console_fleet(backlog_events, store_id);
    CREATE INDEX console_fleet_oldest
        ON console_fleet(coalesce(oldest_unsynced_at, {NEVER}), store_id);
    CREATE INDEX console_fleet_faults ON console_fleet(device_faults, store_id);
    CREATE INDEX console_fleet_last_event ON console_fleet(coalesce(last_event_at, 0), store_id);
    CREATE INDEX console_fleet_today ON console_fleet(events_today, store_id);
    CREATE INDEX console_fleet_alerts ON console_fleet(active_alerts, store_id);
    CREATE INDEX console_fleet_dead ON console_fleet(dead_letters) WHERE dead_letters > 0;

    CREATE TABLE console_devices (
        store_id    TEXT NOT NULL,
        device_id   TEXT NOT NULL,
        agent_id    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        condition   TEXT NOT NULL,
        detail      TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (store_id, device_id)
    ) WITHOUT ROWID;
    CREATE INDEX console_devices_condition ON console_devices(kind, condition);
    CREATE INDEX console_devices_state ON console_devices(kind, state);

    CREATE TABLE console_hourly (
        store_id      TEXT NOT NULL,
        hour          INTEGER NOT NULL,
        events        INTEGER NOT NULL DEFAULT 0,
        scans         INTEGER NOT NULL DEFAULT 0,
        unrecognised  INTEGER NOT NULL DEFAULT 0,
        redemptions   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (store_id, hour)
    ) WITHOUT ROWID;
    CREATE INDEX console_hourly_hour ON console_hourly(hour);
    CREATE INDEX console_hourly_redemptions ON console_hourly(hour) WHERE redemptions > 0;

    CREATE TABLE console_device_hourly (
        store_id      TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        hour          INTEGER NOT NULL,
        scans         INTEGER NOT NULL DEFAULT 0,
        unrecognised  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (store_id, device_id, hour)
    ) WITHOUT ROWID;
    CREATE INDEX console_device_hourly_hour ON console_device_hourly(hour);

    CREATE TABLE console_scan_examples (
        cursor       INTEGER PRIMARY KEY,   -- the event's ingest cursor
        store_id     TEXT NOT NULL,
        device_id    TEXT NOT NULL,
        occurred_at  INTEGER NOT NULL,
        text         TEXT NOT NULL,
        symbology    TEXT,
        reason       TEXT
    );
    CREATE INDEX console_scan_examples_device
        ON console_scan_examples(store_id, device_id, cursor);

    CREATE TABLE console_alerts (
        alert_id         INTEGER PRIMARY KEY AUTOINCREMENT,
        rule             TEXT NOT NULL,
        store_id         TEXT NOT NULL,
        device_id        TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        summary          TEXT NOT NULL,
        opened_at        INTEGER NOT NULL,
        acknowledged_at  INTEGER,
        acknowledged_by  TEXT,
        resolved_at      INTEGER
    );
    -- The one-active-alert rule is the database's to keep, whichever replica evaluates.
    CREATE UNIQUE INDEX console_alerts_active
        ON console_alerts(rule, store_id, device_id) WHERE state != 'resolved';
    CREATE INDEX console_alerts_state ON console_alerts(state, alert_id);
    CREATE INDEX console_alerts_store ON console_alerts(store_id, alert_id);
    CREATE INDEX console_alerts_resolved ON console_alerts(resolved_at)
        WHERE resolved_at IS NOT NULL;

    -- What the roll-up needs to find changed agents without scanning them all.
    CREATE INDEX IF NOT EXISTS console_agents_heartbeat ON agents(heartbeat_at);
    CREATE INDEX IF NOT EXISTS console_agents_enrolled ON agents(enrolled_at);
    CREATE INDEX IF NOT EXISTS console_agents_revoked ON agents(revoked_at)
        WHERE revoked_at IS NOT NULL;
    """,
    # 2: what an agent's latest heartbeat says it refused (the "config refused" rule).
    """
    ALTER TABLE console_fleet ADD COLUMN config_refused TEXT;
    CREATE INDEX console_fleet_config_refused ON console_fleet(store_id)
        WHERE config_refused IS NOT NULL;
    """,
)


def migrate_console(conn: sqlite3.Connection) -> int:
    """Bring the console tables to the latest version (concurrent-process safe, like `migrate`)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS console_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    latest = len(CONSOLE_MIGRATIONS)
    if _version(conn) == latest:
        return latest
    for version in range(1, latest + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _version(conn)
            if current > latest:
                raise sqlite3.DatabaseError(
                    f"console schema version {current} is newer than this build ({latest})"
                )
            if current < version:
                for statement in _statements(CONSOLE_MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO console_meta (key, value) VALUES ('schema', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (version,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return latest


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM console_meta WHERE key = 'schema'").fetchone()
    return 0 if row is None else int(row[0])
