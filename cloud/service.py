"""The cloud in-process: start it on a loopback port, issue codes, stop it (demo and tests)."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from aiohttp import web

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.counters import Counters
from cloud.errors import UsageError
from cloud.fleet import DEFAULT_CODE_TTL, issue_enroll_code
from cloud.keys import COUNTERS, STORAGE
from cloud.slowclient import GuardedAppRunner
from cloud.storage import check_db_url, open_storage, sqlite_path
from cloud.storage.base import EnrollCode, Storage


@dataclass(slots=True)
class RunningCloud:
    """A started cloud service; `url` carries the real bound port."""

    config: CloudConfig
    url: str
    port: int
    app: web.Application
    _runner: web.AppRunner

    @property
    def admin_token(self) -> str:
        """The admin bearer token this instance accepts."""
        return self.config.admin_token

    @property
    def storage(self) -> Storage:
        """The live storage of this instance."""
        return self.app[STORAGE]

    @property
    def counters(self) -> Counters:
        """The live bad-request and ingest counters."""
        return self.app[COUNTERS]

    async def create_enroll_code(
        self, store_id: str, ttl: timedelta = DEFAULT_CODE_TTL, now: datetime | None = None
    ) -> EnrollCode:
        """A single-use code for `store_id` (created if new), through the live storage."""
        return await issue_enroll_code(self.storage, store_id, ttl, now)

    async def stop(self) -> None:
        """Stop serving and close storage; idempotent."""
        await self._runner.cleanup()

    async def __aenter__(self) -> "RunningCloud":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_cloud(config: CloudConfig) -> RunningCloud:
    """Serve `config` on `config.host:config.port` (port 0 picks a free one) until `stop()`."""
    app = create_app(config)
    runner = GuardedAppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = _bound_port(runner)
    except BaseException:
        await runner.cleanup()
        raise
    host = f"[{config.host}]" if ":" in config.host else config.host
    return RunningCloud(config, f"http://{host}:{port}", port, app, runner)


async def create_enroll_code(
    db_url: str,
    store_id: str,
    ttl: timedelta = DEFAULT_CODE_TTL,
    now: datetime | None = None,
) -> EnrollCode:
    """Open the database at `db_url`, issue one code for `store_id` and close it again."""
    storage = await open_storage(db_url)
    try:
        return await issue_enroll_code(storage, store_id, ttl, now)
    finally:
        await storage.close()


async def migrate_database(db_url: str) -> tuple[int, list[str]]:
    """Apply pending migrations; the schema version and the steps applied now."""
    if check_db_url(db_url) == "postgresql":
        from cloud.storage.postgres import PostgresStorage
        from cloud.storage.postgres._migrate import load_migrations

        storage = await PostgresStorage.open(db_url, pool_size=1)
        await storage.close()
        steps = [f"{m.version:04d}_{m.name}" for m in storage.applied]
        return load_migrations()[-1].version, steps
    from cloud.storage._schema import MIGRATIONS, user_version
    from cloud.storage.sqlite import SqliteStorage

    path = sqlite_path(db_url)
    before = await asyncio.to_thread(user_version, path)
    sqlite = await SqliteStorage.open(path)
    await sqlite.close()
    return len(MIGRATIONS), [f"{v:04d}" for v in range(before + 1, len(MIGRATIONS) + 1)]


async def manage_retention(
    db_url: str, keep_days: int | None = None, keep_all: bool = False, apply: bool = False
) -> tuple[int | None, list[tuple[str, int]]]:
    """Set retention if asked, drop due days if `apply`; the setting and what was dropped."""
    if check_db_url(db_url) != "postgresql":
        raise UsageError(
            "retention needs PostgreSQL: SQLite keeps every event (its event table is also "
            "the dedupe key, so rows cannot be dropped without losing exactly-once)"
        )
    from cloud.storage.postgres import PostgresStorage

    storage = await PostgresStorage.open(db_url, pool_size=1)
    try:
        if keep_all:
            await storage.set_retention(None)
        elif keep_days is not None:
            await storage.set_retention(keep_days)
        dropped = await storage.apply_retention(datetime.now(UTC)) if apply else []
        return await storage.retention_days(), [(str(d.day), d.events) for d in dropped]
    finally:
        await storage.close()


def _bound_port(runner: web.AppRunner) -> int:
    # The socket's own address: with port 0 only the kernel knows which port it chose.
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port: int = address[1]
            return port
    raise RuntimeError("the site bound no TCP address")
