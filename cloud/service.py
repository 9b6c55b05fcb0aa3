"""The cloud in-process: start it on a loopback port, issue codes, stop it (demo and tests)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from aiohttp import web

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.counters import Counters
from cloud.fleet import DEFAULT_CODE_TTL, issue_enroll_code
from cloud.keys import COUNTERS, STORAGE
from cloud.slowclient import GuardedAppRunner
from cloud.storage import open_storage
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


def _bound_port(runner: web.AppRunner) -> int:
    # The socket's own address: with port 0 only the kernel knows which port it chose.
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port: int = address[1]
            return port
    raise RuntimeError("the site bound no TCP address")
