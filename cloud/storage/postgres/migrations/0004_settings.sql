-- Remote business config (SQLite: cloud/storage/_settings_schema.py): settings versions for
-- the fleet and per store, and what each agent last reported applying or refusing.

-- One row per write, never updated: the history is the table. store_id NULL is the fleet-wide
-- document. Writers take an advisory lock before the identity is drawn (storage/settings.py),
-- so versions are assigned in commit order. `json`, not jsonb: documents are read whole and
-- never queried inside, and json keeps the author's key order, as SQLite's TEXT does.
CREATE TABLE config_versions (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    text COLLATE "C" REFERENCES stores (store_id),
    document    json NOT NULL,
    author      text NOT NULL,
    comment     text NOT NULL,
    created_at  timestamptz NOT NULL
);
-- Latest version of a scope (store_id IS NULL is an index search too), and its history.
CREATE INDEX config_versions_scope ON config_versions (store_id, version);

-- What each agent last reported: the config it runs and the last one it refused.
CREATE TABLE agent_config (
    agent_id         text COLLATE "C" PRIMARY KEY REFERENCES agents (agent_id),
    changed_at       timestamptz NOT NULL,
    applied_version  bigint,
    applied_hash     text,
    refused_version  bigint,
    refused_hash     text,
    refused_reason   text,
    refused_at       timestamptz
);
