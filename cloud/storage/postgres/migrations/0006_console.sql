-- The console (cloud/storage/console.py has the contract): accounts, sessions, audit, leases,
-- a per-store roll-up of heartbeats and events, hourly counts, alerts. The same tables as
-- the SQLite backend (cloud/storage/_console_schema.py), in PostgreSQL types.

-- Watermarks and change counters, one row each, made here so every transaction can lock its
-- row FOR UPDATE: that lock is what makes refresh, aggregation and evaluation run one at a
-- time across replicas, each re-reading its watermark once it holds it.
CREATE TABLE console_meta (
    key    text PRIMARY KEY,
    value  bigint NOT NULL
);
INSERT INTO console_meta (key, value) VALUES
    ('heartbeat_mark', 0),   -- unix µs: newest heartbeat/enrollment/revocation folded in
    ('events_cursor', 0),    -- events.cursor of the last event counted
    ('events_day', 0),       -- UTC day number (unix days) that events_today counts
    ('evaluated_at', 0),     -- unix µs of the last alert evaluation
    ('accounts', 0),         -- serializes account changes (the last-admin check)
    ('fleet_version', 0),
    ('alerts_version', 0);

CREATE TABLE console_users (
    user_id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username             text NOT NULL,
    password_hash        text NOT NULL,
    role                 text NOT NULL CHECK (role IN ('admin', 'engineer', 'viewer')),
    created_at           timestamptz NOT NULL,
    password_changed_at  timestamptz NOT NULL,
    disabled_at          timestamptz
);
-- Names are unique case-insensitively, as SQLite's COLLATE NOCASE (no citext: no extension
-- to install).
CREATE UNIQUE INDEX console_users_name ON console_users (lower(username));

-- Keyed by the SHA-256 of the cookie token: a stolen database holds no usable session.
CREATE TABLE console_sessions (
    token_hash    text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES console_users (user_id),
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

CREATE TABLE console_audit (
    audit_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL,
    detail    text NOT NULL,
    remote    text NOT NULL
);

CREATE TABLE console_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- One row per store, kept by the evaluator from heartbeats and the event log, so the fleet
-- page filters, sorts and counts 100,000 stores on indexes, never on `events`. fillfactor:
-- every round rewrites the rows of the stores that heartbeated (HOT when no key changed).
CREATE TABLE console_fleet (
    store_id            text COLLATE "C" PRIMARY KEY,
    agents              integer NOT NULL DEFAULT 0,
    last_seen_at        timestamptz,   -- latest heartbeat (else enrollment); NULL: no agent
    backlog_events      bigint NOT NULL DEFAULT 0,
    oldest_unsynced_at  timestamptz,   -- heartbeat time minus the reported age
    device_faults       integer NOT NULL DEFAULT 0,
    dead_letters        bigint NOT NULL DEFAULT 0,
    version             text NOT NULL DEFAULT '',
    clock_offset_s      double precision,
    last_event_at       timestamptz,
    events_day          integer NOT NULL DEFAULT 0,   -- UTC day number events_today counts
    events_today        bigint NOT NULL DEFAULT 0,
    active_alerts       integer NOT NULL DEFAULT 0,
    config_refused      text
) WITH (fillfactor = 80);
-- One index per sort key, each ending in store_id so pages are stable and a backward scan
-- serves the descending sort. NULL placement matches SQLite's coalesce(…, NEVER) / coalesce(…, 0):
-- "never seen" sorts after every time ascending (the default NULLS LAST), "no event yet" before.
CREATE INDEX console_fleet_seen ON console_fleet (last_seen_at, store_id);
CREATE INDEX console_fleet_backlog ON console_fleet (backlog_events, store_id);
CREATE INDEX console_fleet_oldest ON console_fleet (oldest_unsynced_at, store_id);
CREATE INDEX console_fleet_faults ON console_fleet (device_faults, store_id);
CREATE INDEX console_fleet_last_event ON console_fleet (last_event_at NULLS FIRST, store_id);
CREATE INDEX console_fleet_today ON console_fleet (events_today, store_id);
CREATE INDEX console_fleet_alerts ON console_fleet (active_alerts, store_id);
CREATE INDEX console_fleet_dead ON console_fleet (dead_letters) WHERE dead_letters > 0;
CREATE INDEX console_fleet_config_refused ON console_fleet (store_id)
    WHERE config_refused IS NOT NULL;

CREATE TABLE console_devices (
    store_id    text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL,
    agent_id    text COLLATE "C" NOT NULL,
    kind        text NOT NULL,
    state       text NOT NULL,
    condition   text NOT NULL,
    detail      text,
    updated_at  timestamptz NOT NULL,
    -- The refresh transaction (xid) that last wrote the row: those it missed are devices
    -- no heartbeat reports any more, and it deletes them.
    refreshed_in  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, device_id)
);
CREATE INDEX console_devices_condition ON console_devices (kind, condition);
CREATE INDEX console_devices_state ON console_devices (kind, state);

CREATE TABLE console_hourly (
    store_id      text COLLATE "C" NOT NULL,
    hour          timestamptz NOT NULL,
    events        bigint NOT NULL DEFAULT 0,
    scans         bigint NOT NULL DEFAULT 0,
    unrecognised  bigint NOT NULL DEFAULT 0,
    redemptions   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, hour)
);
CREATE INDEX console_hourly_hour ON console_hourly (hour);
CREATE INDEX console_hourly_redemptions ON console_hourly (hour) WHERE redemptions > 0;

CREATE TABLE console_device_hourly (
    store_id      text COLLATE "C" NOT NULL,
    device_id     text COLLATE "C" NOT NULL,
    hour          timestamptz NOT NULL,
    scans         bigint NOT NULL DEFAULT 0,
    unrecognised  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, device_id, hour)
);
CREATE INDEX console_device_hourly_hour ON console_device_hourly (hour);

CREATE TABLE console_scan_examples (
    cursor       bigint PRIMARY KEY,   -- the event's events.cursor
    store_id     text COLLATE "C" NOT NULL,
    device_id    text COLLATE "C" NOT NULL,
    occurred_at  timestamptz NOT NULL,
    text         text NOT NULL,
    symbology    text,
    reason       text
);
CREATE INDEX console_scan_examples_device ON console_scan_examples (store_id, device_id, cursor);

CREATE TABLE console_alerts (
    alert_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule             text NOT NULL,
    store_id         text COLLATE "C" NOT NULL,
    device_id        text COLLATE "C" NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    summary          text NOT NULL,
    opened_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz
);
-- The one-active-alert rule is the database's to keep, whichever replica evaluates.
CREATE UNIQUE INDEX console_alerts_active
    ON console_alerts (rule, store_id, device_id) WHERE state <> 'resolved';
CREATE INDEX console_alerts_state ON console_alerts (state, alert_id);
CREATE INDEX console_alerts_store ON console_alerts (store_id, alert_id);
CREATE INDEX console_alerts_resolved ON console_alerts (resolved_at)
    WHERE resolved_at IS NOT NULL;

-- No index on agents.heartbeat_at (0001_fleet.sql: heartbeats stay HOT updates); the
-- refresh finds changed agents with one sequential scan per round instead.
