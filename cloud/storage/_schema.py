"""SQLite schema as an append-only list of migrations, applied by `PRAGMA user_version`.

Times are INTEGER unix microseconds (UTC): compact, exact, and comparable in indexes.
Never edit a released migration; append a new one.
"""

import sqlite3

from cloud.storage._coupon_schema import COUPONS_V1
from cloud.storage._settings_schema import SETTINGS_V1

MIGRATIONS: tuple[str, ...] = (
    # 1: fleet registry and event log.
    """
    CREATE TABLE stores (
        store_id      TEXT PRIMARY KEY,
        created_at    INTEGER NOT NULL,
        -- Maintained by ingest so the fleet list never counts the event table.
        events_total  INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    CREATE TABLE agents (
        agent_id          TEXT PRIMARY KEY,
        store_id          TEXT NOT NULL REFERENCES stores(store_id),
        token_hash        TEXT NOT NULL UNIQUE,
        agent_info        TEXT NOT NULL,
        enrolled_at       INTEGER NOT NULL,
        revoked_at        INTEGER,
        events_total      INTEGER NOT NULL DEFAULT 0,
        last_seq          INTEGER,
        last_event_at     INTEGER,
        heartbeat         TEXT,
        heartbeat_at      INTEGER,
        backlog_events    INTEGER NOT NULL DEFAULT 0,
        oldest_unsynced_age_s REAL
    );
    CREATE INDEX agents_store ON agents(store_id);

    CREATE TABLE enroll_codes (
        code_hash   TEXT PRIMARY KEY,
        store_id    TEXT NOT NULL REFERENCES stores(store_id),
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        used_at     INTEGER,
        used_by     TEXT
    ) WITHOUT ROWID;

    -- `id` is the ingest cursor: AUTOINCREMENT so a cursor is never reused. SQLite allows
    -- AUTOINCREMENT only on the INTEGER PRIMARY KEY, so the permanent dedupe key `event_id`
    -- is a UNIQUE constraint (same index, same ON CONFLICT target). UUIDv7 ids arrive
    -- time-ordered, which keeps that index append-mostly (research/perf.md §2.3).
    -- No foreign key on agent_id/store_id: ingest checks them against the token already, and
    -- a per-row FK probe would tax the hot path.
    CREATE TABLE events (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id     TEXT NOT NULL UNIQUE,
        agent_id     TEXT NOT NULL,
        store_id     TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        device_id    TEXT NOT NULL,
        kind         TEXT NOT NULL,
        occurred_at  INTEGER NOT NULL,
        received_at  INTEGER NOT NULL,
        body         TEXT NOT NULL
    );
    -- The admin queries: by store (+kind) in cursor order, and by kind across the fleet.
    CREATE INDEX events_store ON events(store_id, id);
    CREATE INDEX events_store_kind ON events(store_id, kind, id);
    CREATE INDEX events_kind ON events(kind, id);
    """,
    # 2: token rotation: a staged token, promoted to token_hash by its first use.
    """
    ALTER TABLE agents ADD COLUMN next_token_hash TEXT;
    CREATE UNIQUE INDEX agents_next_token ON agents(next_token_hash)
        WHERE next_token_hash IS NOT NULL;
    """,
    # 3: coupon campaigns, keys, issued coupons, fleet-wide holds and reconciliation.
    COUPONS_V1,
    # 4: remote business config: settings versions (fleet and per store), agent reports.
    SETTINGS_V1,
    # 5: rate-limit buckets in the database, like every other piece of state a retry needs.
    """
    -- GCRA: `tat` is the bucket's theoretical arrival time in unix seconds (RFC-less, but see
    -- docs/SCALING.md "Load shedding"); one row per key, one UPDATE per admission.
    CREATE TABLE rate_limits (
        key  TEXT PRIMARY KEY,
        tat  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the latest schema version; returns that version.

    Safe against a second process migrating at the same time (say `cloud enroll-code` beside
    `cloud serve` on a fresh file): each step re-reads the version inside its write lock.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
        return len(MIGRATIONS)  # the common case: no write lock taken
    for version in range(1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            current: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise sqlite3.DatabaseError(
                    f"database schema version {current} is newer than this build "
                    f"({len(MIGRATIONS)})"
                )
            if current < version:
                for statement in _statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def user_version(path: str) -> int:
    """The schema version of the file at `path` (0 when missing or new); blocking."""
    import os

    if path == ":memory:" or not os.path.exists(path):
        return 0
    conn = sqlite3.connect(path)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version
    finally:
        conn.close()


def _statements(script: str) -> list[str]:
    # Not executescript(): it COMMITs any open transaction first, breaking the atomic step.
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")
    return statements
