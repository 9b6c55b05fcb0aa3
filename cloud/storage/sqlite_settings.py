"""`ConfigStorage` on the SQLite backend: the same file, connection and thread as `Storage`."""

import sqlite3
from datetime import datetime
from typing import Any

import orjson

from cloud.errors import Conflict, NotFound
from cloud.storage._sqlite_sql import from_us, maybe_dt, to_us, write
from cloud.storage.settings import AgentConfigState, ConfigVersion
from cloud.storage.sqlite import SqliteStorage
from protocol.settings import ConfigRefusal

_VERSION_COLUMNS = "version, store_id, document, author, comment, created_at"
_STATE_COLUMNS = (
    "c.agent_id, c.changed_at, c.applied_version, c.applied_hash,"
    " c.refused_version, c.refused_hash, c.refused_reason, c.refused_at"
)
_LATEST = f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE store_id = ?"
_LATEST += " ORDER BY version DESC LIMIT 1"
_LATEST_FLEET = _LATEST.replace("store_id = ?", "store_id IS NULL")


class SqliteConfigStorage:
    """Remote-config tables of one `SqliteStorage`; every call is one transaction."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._thread = storage.thread

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

        def work(conn: sqlite3.Connection) -> ConfigVersion:
            with write(conn):
                if (
                    store_id is not None
                    and (
                        conn.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,))
                    ).fetchone()
                    is None
                ):
                    raise NotFound(f"unknown store {store_id!r}", key="unknown_store")
                if if_version is not None:
                    latest = _latest(conn, store_id)
                    current = latest[0] if latest else 0
                    if current != if_version:
                        scope = f"store {store_id}" if store_id else "the fleet"
                        raise Conflict(
                            f"the config of {scope} is at version {current}, not {if_version};"
                            " read it again and reapply your change",
                            key="config_conflict",
                        )
                row = conn.execute(
                    "INSERT INTO config_versions (store_id, document, author, comment,"
                    f" created_at) VALUES (?, ?, ?, ?, ?) RETURNING {_VERSION_COLUMNS}",
                    (store_id, body, author, comment, to_us(now)),
                ).fetchall()[0]
            return _version(row)

        return await self._thread.run(work)

    async def current_config(
        self, store_id: str
    ) -> tuple[ConfigVersion | None, ConfigVersion | None]:
        """(latest fleet version, latest store version), read in one snapshot."""

        def work(conn: sqlite3.Connection) -> tuple[ConfigVersion | None, ConfigVersion | None]:
            conn.execute("BEGIN")  # one read snapshot for both rows
            try:
                fleet = _latest(conn, None)
                store = _latest(conn, store_id)
            finally:
                conn.execute("COMMIT")
            return _maybe_version(fleet), _maybe_version(store)

        return await self._thread.run(work)

    async def latest_fleet_config(self) -> ConfigVersion | None:
        """The latest fleet-wide version, or None."""

        def work(conn: sqlite3.Connection) -> ConfigVersion | None:
            return _maybe_version(_latest(conn, None))

        return await self._thread.run(work)

    async def latest_store_configs(self) -> list[ConfigVersion]:
        """The latest version of every store that has an override, by store id."""

        def work(conn: sqlite3.Connection) -> list[ConfigVersion]:
            rows = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE version IN"
                " (SELECT max(version) FROM config_versions WHERE store_id IS NOT NULL"
                " GROUP BY store_id) ORDER BY store_id"
            ).fetchall()
            return [_version(row) for row in rows]

        return await self._thread.run(work)

    async def get_config_version(self, version: int) -> ConfigVersion | None:
        """One version by number, or None."""

        def work(conn: sqlite3.Connection) -> ConfigVersion | None:
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE version = ?", (version,)
            ).fetchone()
            return _maybe_version(row)

        return await self._thread.run(work)

    async def list_config_versions(
        self, store_id: str | None, include_fleet: bool, before: int | None, limit: int
    ) -> list[ConfigVersion]:
        """Newest first: the fleet's, a store's, or a store's together with the fleet's."""
        scopes = ["store_id IS NULL"] if include_fleet or store_id is None else []
        params: list[Any] = []
        if store_id is not None:
            scopes.append("store_id = ?")
            params.append(store_id)
        sql = f"SELECT {_VERSION_COLUMNS} FROM config_versions WHERE ({' OR '.join(scopes)})"
        if before is not None:
            sql += " AND version < ?"
            params.append(before)
        sql += " ORDER BY version DESC LIMIT ?"
        params.append(limit)

        def work(conn: sqlite3.Connection) -> list[ConfigVersion]:
            return [_version(row) for row in conn.execute(sql, params)]

        return await self._thread.run(work)

    async def record_config_report(
        self,
        agent_id: str,
        applied_version: int | None,
        applied_hash: str | None,
        refusal: ConfigRefusal | None,
        now: datetime,
    ) -> None:
        """Upsert the agent's row, only when something changed (no write lock otherwise)."""
        refused = (
            (refusal.settings_version, refusal.config_hash, refusal.reason, to_us(refusal.at))
            if refusal is not None
            else None
        )

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT applied_version, applied_hash, refused_version, refused_hash,"
                " refused_reason, refused_at FROM agent_config WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
            unchanged = row is not None and row[:2] == (applied_version, applied_hash)
            if unchanged and (refused is None or tuple(row[2:]) == refused):
                return  # the common heartbeat: nothing new to say
            with write(conn):
                conn.execute(
                    "INSERT INTO agent_config (agent_id, changed_at, applied_version,"
                    " applied_hash) VALUES (?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET"
                    " changed_at = excluded.changed_at,"
                    " applied_version = excluded.applied_version,"
                    " applied_hash = excluded.applied_hash",
                    (agent_id, to_us(now), applied_version, applied_hash),
                )
                if refused is not None:
                    conn.execute(
                        "UPDATE agent_config SET refused_version = ?, refused_hash = ?,"
                        " refused_reason = ?, refused_at = ? WHERE agent_id = ?",
                        (*refused, agent_id),
                    )

        await self._thread.run(work)

    async def config_reports(self, store_id: str) -> list[AgentConfigState]:
        """Every reporting agent of the store, in enrollment order."""

        def work(conn: sqlite3.Connection) -> list[AgentConfigState]:
            rows = conn.execute(
                f"SELECT {_STATE_COLUMNS} FROM agent_config c"
                " JOIN agents a ON a.agent_id = c.agent_id"
                " WHERE a.store_id = ? ORDER BY a.enrolled_at",
                (store_id,),
            ).fetchall()
            return [_state(row) for row in rows]

        return await self._thread.run(work)


def _latest(conn: sqlite3.Connection, store_id: str | None) -> Any:
    """The latest row of a scope: the fleet (None) or a store."""
    if store_id is None:
        return conn.execute(_LATEST_FLEET).fetchone()
    return conn.execute(_LATEST, (store_id,)).fetchone()


def _version(row: tuple[Any, ...]) -> ConfigVersion:
    version, store_id, document, author, comment, created_at = row
    return ConfigVersion(version, store_id, orjson.loads(document), author, comment,
                         from_us(created_at))  # fmt: skip


def _maybe_version(row: tuple[Any, ...] | None) -> ConfigVersion | None:
    return None if row is None else _version(row)


def _state(row: tuple[Any, ...]) -> AgentConfigState:
    agent_id, changed_at, version, config_hash, r_version, r_hash, r_reason, r_at = row
    refused_at = maybe_dt(r_at)
    refusal = None
    if r_reason is not None and refused_at is not None:
        refusal = ConfigRefusal(settings_version=r_version, config_hash=r_hash, reason=r_reason,
                                at=refused_at)  # fmt: skip
    return AgentConfigState(agent_id, from_us(changed_at), version, config_hash, refusal)
