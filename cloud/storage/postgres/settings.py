"""`ConfigStorage` on PostgreSQL: the pool of `PostgresStorage`, versions in commit order."""

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from cloud.errors import Conflict, NotFound
from cloud.storage.postgres._sql import Params
from cloud.storage.postgres._types import Conn
from cloud.storage.postgres.storage import PostgresStorage
from cloud.storage.settings import AgentConfigState, ConfigVersion
from protocol.settings import ConfigRefusal

# pg_advisory_xact_lock key of config writers ("se" "co"): one writer at a time, so a
# version number is drawn only after every smaller one committed (see `add_config_version`).
CONFIG_LOCK = 0x7365_636F
_VERSION_COLUMNS = "version, store_id, document, author, comment, created_at"
_LATEST = (
    f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE {{scope}} ORDER BY version DESC LIMIT 1"
)
_LATEST_FLEET = _LATEST.format(scope="store_id IS NULL")
_LATEST_STORE = _LATEST.format(scope="store_id = $1")
# One statement, so one snapshot for both scopes.
_CURRENT = f"({_LATEST_FLEET}) UNION ALL ({_LATEST_STORE})"
# Inserts nothing (no row lock, no transaction id, no WAL flush) when the agent says what it
# said last time: the common heartbeat. A refusal given replaces the stored one; none keeps it.
_REPORT = """
INSERT INTO agent_config AS c (agent_id, changed_at, applied_version, applied_hash,
                               refused_version, refused_hash, refused_reason, refused_at)
SELECT $1, $2::timestamptz, $3::bigint, $4::text, $5::bigint, $6::text, $7::text,
       $8::timestamptz
WHERE NOT EXISTS (
    SELECT 1 FROM agent_config s WHERE s.agent_id = $1
    AND s.applied_version IS NOT DISTINCT FROM $3 AND s.applied_hash IS NOT DISTINCT FROM $4
    AND ($7 IS NULL OR (s.refused_version IS NOT DISTINCT FROM $5
                        AND s.refused_hash IS NOT DISTINCT FROM $6
                        AND s.refused_reason = $7 AND s.refused_at = $8))
)
ON CONFLICT (agent_id) DO UPDATE SET
    changed_at = excluded.changed_at,
    applied_version = excluded.applied_version,
    applied_hash = excluded.applied_hash,
    refused_version = CASE WHEN $7 IS NULL THEN c.refused_version ELSE $5 END,
    refused_hash = CASE WHEN $7 IS NULL THEN c.refused_hash ELSE $6 END,
    refused_reason = CASE WHEN $7 IS NULL THEN c.refused_reason ELSE $7 END,
    refused_at = CASE WHEN $7 IS NULL THEN c.refused_at ELSE $8 END
"""


class PostgresConfigStorage:
    """Remote-config tables beside one `PostgresStorage`'s, on its pool."""

    def __init__(self, storage: PostgresStorage) -> None:
        self._storage = storage

    async def add_config_version(
        self,
        store_id: str | None,
        document: dict[str, Any],
        author: str,
        comment: str,
        now: datetime,
        if_version: int | None = None,
    ) -> ConfigVersion:
        """Append a version in one transaction, after the store and `if_version` checks."""
        body = orjson.dumps(document).decode()
        # READ COMMITTED whatever the server default: each statement after the lock must see
        # what the previous writer committed (a REPEATABLE READ snapshot would be older).
        async with self._storage.connection() as conn, conn.transaction(isolation="read_committed"):
            # A statement of its own: a statement's snapshot is taken before it runs, so
            # reads in the same statement as the lock could miss the writer just before.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CONFIG_LOCK)
            if store_id is not None and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM stores WHERE store_id = $1)", store_id
            ):
                raise NotFound(f"unknown store {store_id!r}", key="unknown_store")
            if if_version is not None:
                latest = await _latest(conn, store_id)
                current = latest["version"] if latest else 0
                if current != if_version:
                    scope = f"store {store_id}" if store_id else "the fleet"
                    raise Conflict(
                        f"the config of {scope} is at version {current}, not {if_version};"
                        " read it again and reapply your change",
                        key="config_conflict",
                    )
            row = await conn.fetchrow(
                "INSERT INTO config_versions (store_id, document, author, comment, created_at)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_VERSION_COLUMNS}",
                store_id,
                body,
                author,
                comment,
                now,
            )
        assert row is not None  # INSERT … RETURNING of one row
        return _version(row)

    async def current_config(
        self, store_id: str
    ) -> tuple[ConfigVersion | None, ConfigVersion | None]:
        """(latest fleet version, latest store version), read in one snapshot."""
        async with self._storage.connection() as conn:
            rows = await conn.fetch(_CURRENT, store_id)
        fleet = next((_version(r) for r in rows if r["store_id"] is None), None)
        store = next((_version(r) for r in rows if r["store_id"] is not None), None)
        return fleet, store

    async def latest_fleet_config(self) -> ConfigVersion | None:
        """The latest fleet-wide version, or None."""
        async with self._storage.connection() as conn:
            return _maybe_version(await _latest(conn, None))

    async def latest_store_configs(self) -> list[ConfigVersion]:
        """The latest version of every store that has an override, by store id."""
        async with self._storage.connection() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT ON (store_id) {_VERSION_COLUMNS} FROM config_versions"
                " WHERE store_id IS NOT NULL ORDER BY store_id, version DESC"
            )
        return [_version(row) for row in rows]

    async def get_config_version(self, version: int) -> ConfigVersion | None:
        """One version by number, or None."""
        async with self._storage.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE version = $1", version
            )
        return _maybe_version(row)

    async def list_config_versions(
        self, store_id: str | None, include_fleet: bool, before: int | None, limit: int
    ) -> list[ConfigVersion]:
        """Newest first: the fleet's, a store's, or a store's together with the fleet's."""
        params = Params()
        scopes = ["store_id IS NULL"] if include_fleet or store_id is None else []
        if store_id is not None:
            scopes.append(f"store_id = {params.add(store_id)}")
        sql = f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE ({' OR '.join(scopes)})"
        if before is not None:
            sql += f" AND version < {params.add(before)}"
        sql += f" ORDER BY version DESC LIMIT {params.add(limit)}"
        async with self._storage.connection() as conn:
            rows = await conn.fetch(sql, *params.values)
        return [_version(row) for row in rows]

    async def record_config_report(
        self,
        agent_id: str,
        applied_version: int | None,
        applied_hash: str | None,
        refusal: ConfigRefusal | None,
        now: datetime,
    ) -> None:
        """Upsert the agent's row in one statement that writes only when something changed."""
        refused = (
            (refusal.settings_version, refusal.config_hash, refusal.reason, refusal.at)
            if refusal is not None
            else (None, None, None, None)
        )
        async with self._storage.connection() as conn:
            await conn.execute(_REPORT, agent_id, now, applied_version, applied_hash, *refused)

    async def config_reports(self, store_id: str) -> list[AgentConfigState]:
        """Every reporting agent of the store, in enrollment order."""
        async with self._storage.connection() as conn:
            rows = await conn.fetch(
                "SELECT c.* FROM agent_config c JOIN agents a ON a.agent_id = c.agent_id"
                " WHERE a.store_id = $1 ORDER BY a.enrolled_at, a.agent_id",
                store_id,
            )
        return [_state(row) for row in rows]


async def _latest(conn: Conn, store_id: str | None) -> asyncpg.Record | None:
    """The latest row of a scope: the fleet (None) or a store."""
    if store_id is None:
        return await conn.fetchrow(_LATEST_FLEET)
    return await conn.fetchrow(_LATEST_STORE, store_id)


def _version(row: asyncpg.Record) -> ConfigVersion:
    return ConfigVersion(
        version=row["version"],
        store_id=row["store_id"],
        document=orjson.loads(row["document"]),
        author=row["author"],
        comment=row["comment"],
        created_at=row["created_at"],
    )


def _maybe_version(row: asyncpg.Record | None) -> ConfigVersion | None:
    return None if row is None else _version(row)


def _state(row: asyncpg.Record) -> AgentConfigState:
    refusal = None
    if row["refused_reason"] is not None:
        refusal = ConfigRefusal(
            settings_version=row["refused_version"],
            config_hash=row["refused_hash"],
            reason=row["refused_reason"],
            at=row["refused_at"],
        )
    return AgentConfigState(
        agent_id=row["agent_id"],
        changed_at=row["changed_at"],
        applied_version=row["applied_version"],
        applied_hash=row["applied_hash"],
        refusal=refusal,
    )
