"""The remote-config storage interface, beside `Storage` so each backend can add it on its own.

Every settings document ever written is an immutable row: a new version, with who wrote it,
when and why, never an update in place. Replicas hold none of it in memory. Contract points:
- Version numbers are one sequence for the fleet document and every store's, assigned in
  commit order: a store's settings version, max(fleet version, store version), then grows
  with every change that affects it. SQLite's single writer gives this for free; PostgreSQL
  must serialize writers to this table (e.g. a transaction-level advisory lock), since
  sequence order is not commit order.
- `add_config_version` with `if_version` is a compare-and-set on the scope's current version.
- `record_config_report` writes only when the report differs from the stored one, so a
  fleet's heartbeats cost no extra write transactions.
- Failures surface as `StorageError`; refusals the caller caused as `RequestError`s.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cloud.storage.base import Storage
from protocol.settings import ConfigRefusal


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One written settings document: fleet-wide when `store_id` is None."""

    version: int
    store_id: str | None
    document: dict[str, Any]
    author: str
    comment: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgentConfigState:
    """What an agent last said about its business config, and its last refusal ever."""

    agent_id: str
    changed_at: datetime
    applied_version: int | None
    applied_hash: str | None
    refusal: ConfigRefusal | None


class ConfigStorage(Protocol):
    """Async storage of settings versions and of what each agent applied or refused."""

    async def add_config_version(
        self,
        store_id: str | None,
        document: dict[str, Any],
        author: str,
        comment: str,
        now: datetime,
        if_version: int | None = None,
    ) -> ConfigVersion:
        """Append a version for the fleet (None) or a store; NotFound for an unknown store.

        `if_version`: the scope's current version the writer saw (0: none yet); Conflict,
        and nothing written, when it has moved on since.
        """

    async def current_config(
        self, store_id: str
    ) -> tuple[ConfigVersion | None, ConfigVersion | None]:
        """(latest fleet version, latest version of `store_id`), each None if never written."""

    async def latest_fleet_config(self) -> ConfigVersion | None:
        """The latest fleet-wide version, or None."""

    async def latest_store_configs(self) -> list[ConfigVersion]:
        """The latest version of every store that has an override, by store id."""

    async def get_config_version(self, version: int) -> ConfigVersion | None:
        """One version by number, or None."""

    async def list_config_versions(
        self, store_id: str | None, include_fleet: bool, before: int | None, limit: int
    ) -> list[ConfigVersion]:
        """Newest first, below `before`: the fleet's (store_id None), a store's, or both."""

    async def record_config_report(
        self,
        agent_id: str,
        applied_version: int | None,
        applied_hash: str | None,
        refusal: ConfigRefusal | None,
        now: datetime,
    ) -> None:
        """Keep what the agent applied; a refusal replaces the last one, None keeps it."""

    async def config_reports(self, store_id: str) -> list[AgentConfigState]:
        """The config state of every agent of a store that ever reported one."""


def config_storage_for(storage: Storage) -> ConfigStorage:
    """The config storage living in the same database as `storage` (same connection/pool)."""
    from cloud.storage.postgres import PostgresStorage
    from cloud.storage.sqlite import SqliteStorage

    if isinstance(storage, SqliteStorage):
        from cloud.storage.sqlite_settings import SqliteConfigStorage

        return SqliteConfigStorage(storage)
    if isinstance(storage, PostgresStorage):
        from cloud.storage.postgres.settings import PostgresConfigStorage

        return PostgresConfigStorage(storage)
    raise TypeError(f"no config storage for {type(storage).__name__}")
