-- Fleet registry: stores, agents, enrollment codes, rate-limit buckets, shared settings.
-- Ids use COLLATE "C": byte order, so keyset paging and prefix ranges agree with SQLite and
-- never depend on the server's locale.

CREATE TABLE stores (
    store_id    text COLLATE "C" PRIMARY KEY,
    created_at  timestamptz NOT NULL
);

-- fillfactor 70: every heartbeat and every ingest batch rewrites an agent's row; free space
-- on the page lets those be HOT updates (no index touched), which is why heartbeat_at has no
-- index (agents online is counted at scrape time, a few ms at 100,000 agents).
CREATE TABLE agents (
    agent_id              text COLLATE "C" PRIMARY KEY,
    store_id              text COLLATE "C" NOT NULL REFERENCES stores (store_id),
    token_hash            text NOT NULL UNIQUE,
    agent_info            jsonb NOT NULL,
    enrolled_at           timestamptz NOT NULL,
    revoked_at            timestamptz,
    events_total          bigint NOT NULL DEFAULT 0,
    last_seq              bigint,
    last_event_at         timestamptz,
    heartbeat             jsonb,
    heartbeat_at          timestamptz,
    backlog_events        bigint NOT NULL DEFAULT 0,
    oldest_unsynced_age_s double precision
) WITH (fillfactor = 70);
CREATE INDEX agents_store ON agents (store_id);

CREATE TABLE enroll_codes (
    code_hash   text PRIMARY KEY,
    store_id    text COLLATE "C" NOT NULL REFERENCES stores (store_id),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    used_by     text
);

-- GCRA buckets (cloud/storage/_gcra.py): one timestamp per key, in unix seconds.
CREATE TABLE rate_limits (
    key  text COLLATE "C" PRIMARY KEY,
    tat  double precision NOT NULL
) WITH (fillfactor = 70);

-- Settings every replica must agree on (retention), so none lives in a process.
CREATE TABLE settings (
    name   text PRIMARY KEY,
    value  jsonb NOT NULL
);
