"""SQLite schema of the remote-config tables (migration 4 of `_schema.MIGRATIONS`); plain SQL.

Documents are JSON objects, read whole and never queried inside. Times are INTEGER unix
microseconds like every other table.
"""

SETTINGS_V1 = """
    -- One row per write, never updated: the history is the table. store_id NULL is the
    -- fleet-wide document. AUTOINCREMENT: a version number is never reused.
    CREATE TABLE config_versions (
        version     INTEGER PRIMARY KEY AUTOINCREMENT,
        store_id    TEXT REFERENCES stores(store_id),
        document    TEXT NOT NULL,
        author      TEXT NOT NULL,
        comment     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    -- Latest version of a scope, and a scope's history, newest first.
    CREATE INDEX config_versions_scope ON config_versions(store_id, version);

    -- What each agent last reported: the config it runs and the last one it refused.
    CREATE TABLE agent_config (
        agent_id          TEXT PRIMARY KEY REFERENCES agents(agent_id),
        changed_at       INTEGER NOT NULL,
        applied_version   INTEGER,
        applied_hash      TEXT,
        refused_version   INTEGER,
        refused_hash      TEXT,
        refused_reason    TEXT,
        refused_at        INTEGER
    ) WITHOUT ROWID;
"""
