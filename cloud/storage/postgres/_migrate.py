"""Versioned migrations: numbered SQL files in `migrations/`, applied once each, in order.

`NNNN_name.sql` is version NNNN. Each file runs in its own transaction together with its row
in `schema_migrations`, under a session advisory lock, so replicas starting at once apply
each step exactly once. Never edit a released file; add the next number.
"""

import re
from dataclasses import dataclass
from importlib import resources

from cloud.errors import StorageError
from cloud.storage.postgres._types import Conn

# pg_advisory_lock key of the migration step: any constant unlikely to clash ("se" "mi").
MIGRATION_LOCK = 0x7365_6D69
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; versions must run 1, 2, 3… without gaps."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps: {found}")
    return found


async def migrate(conn: Conn) -> list[Migration]:
    """Bring the schema to the newest version; the steps applied now (empty if none)."""
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        newest = max(applied, default=0)
        if newest > len(migrations):
            raise StorageError(
                f"database schema version {newest} is newer than this build ({len(migrations)})"
            )
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def schema_version(conn: Conn) -> int:
    """The newest applied version, 0 for an empty database."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return version
