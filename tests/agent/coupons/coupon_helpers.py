"""A store's coupon machinery in-process against the real cloud on loopback, restartable."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import CouponSection
from agent.coupons.business import BusinessConfigStore
from agent.coupons.flow import CouponFlow
from agent.coupons.remote import CouponCloud
from agent.outbox import Identity, Outbox
from agent.remote_config.poller import ConfigPoller
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud

ADMIN = "coupon-admin-token"


class Cloud:
    """The real cloud service; `stop` and `start` again keep its port and database."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = 0
        self.running: RunningCloud | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = CloudConfig(db_url=f"sqlite:///{self.db}", admin_token=ADMIN, port=self.port)
        self.running = await start_cloud(config)
        self.port = self.running.port

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    async def campaign(self, max_offline_value: int = 5000, **extra: Any) -> int:
        now = datetime.now(UTC)
        body = {
            "name": "Spring sale", "currency": "CNY", "max_offline_value": max_offline_value,
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_to": (now + timedelta(days=10)).isoformat(), **extra,
        }  # fmt: skip
        status, data = await self.admin("POST", "/api/campaigns", body)
        assert status == 201, data
        campaign_id: int = data["campaign_id"]
        return campaign_id

    async def issue(
        self, campaign_id: int, count: int = 1, value: int = 2000, **extra: Any
    ) -> list[str]:
        body = {"count": count, "value": value, **extra}
        status, data = await self.admin("POST", f"/api/campaigns/{campaign_id}/coupons", body)
        assert status == 201, data
        return [c["token"] for c in data["coupons"]]

    async def enroll(self, store_id: str) -> Credentials:
        assert self.running is not None
        code = (await self.running.create_enroll_code(store_id)).code
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/v1/enroll", json={"code": code}) as response,
        ):
            data = await response.json()
        return Credentials(self.url, data["agent_id"], data["store_id"], data["token"])


@dataclass
class Store:
    """One store's outbox, config store, coupon flow and drain, as the runtime wires them."""

    credentials: Credentials
    state_dir: Path
    settings: CouponSection = field(default_factory=CouponSection)
    outbox: Outbox | None = None
    flow: CouponFlow | None = None
    config: BusinessConfigStore | None = None
    poller: ConfigPoller | None = None
    cloud: CouponCloud | None = None

    @property
    def store_id(self) -> str:
        return self.credentials.store_id

    async def open(self) -> "Store":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        identity = Identity(self.credentials.agent_id, self.credentials.store_id)
        self.outbox = await Outbox.open(self.state_dir / "outbox.db", identity)
        self.config = BusinessConfigStore(self.state_dir)
        await asyncio.to_thread(self.config.load)
        self.cloud = CouponCloud(self.credentials)
        self.poller = ConfigPoller(self.config, self.cloud, 60)
        self.flow = CouponFlow(self.outbox, self.store_id, self.config, self.settings, self.cloud)
        return self

    async def refresh_config(self) -> None:
        assert self.poller is not None
        await self.poller.poll_once()

    async def present(self, token: str, device_id: str = "scanner-1", **kw: Any) -> Any:
        assert self.flow is not None
        return await self.flow.present(token, device_id, "scanner", **kw)

    async def sync(self, timeout: float = 10) -> None:
        """Drain the outbox to the cloud until it is empty."""
        assert self.outbox is not None
        client = IngestClient(self.credentials, timeout_s=2)
        worker = DrainWorker(self.outbox, client, backoff_base_s=0.05, backoff_cap_s=0.2)
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(timeout):
                while (await self.outbox.stats()).backlog_events:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()

    async def events(self, kind: str) -> list[dict[str, Any]]:
        """Payloads of `kind` still in the outbox, oldest first."""
        import orjson

        assert self.outbox is not None
        rows = await self.outbox.read_batch(10_000, 64 * 1024 * 1024)
        out = []
        for row in rows:
            event = orjson.loads(row.body)
            if event["kind"] == kind:
                out.append(event["payload"])
        return out

    async def close(self) -> None:
        if self.cloud is not None:
            await self.cloud.close()
        if self.outbox is not None:
            await self.outbox.close()


@contextlib.asynccontextmanager
async def running_cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    cloud = Cloud(tmp_path / "cloud.db")
    await cloud.start()
    try:
        yield cloud
    finally:
        await cloud.stop()
