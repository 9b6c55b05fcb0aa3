"""Heartbeats as the agent builds and sends them, read back from the real cloud on loopback."""

import asyncio
import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker, _gzip_batch
from agent.sync.heartbeat import HeartbeatLoop
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud
from protocol import ScanPayload
from protocol.events import DeviceStatusPayload
from protocol.wire import DeviceHealth, EventBatch

ADMIN = "heartbeat-admin"
SCAN = ScanPayload(raw_b64="QUJD", text="ABC")
PRINTER = DeviceHealth(
    device_id="printer-till", kind="printer", state="degraded", condition="paper_near_end"
)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[RunningCloud]:
    config = CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    async with await start_cloud(config) as running:
        yield running


async def _enroll(cloud: RunningCloud) -> Credentials:
    code = (await cloud.create_enroll_code("store-hb")).code
    async with (
        aiohttp.ClientSession() as session,
        session.post(cloud.url + "/v1/enroll", json={"code": code}) as response,
    ):
        data = await response.json()
    return Credentials(cloud.url, data["agent_id"], data["store_id"], data["token"])


async def _latest_heartbeat(cloud: RunningCloud) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(cloud.url + "/api/stores/store-hb", headers=headers) as response,
    ):
        data = await response.json()
    heartbeat: dict[str, object] = data["agents"][0]["heartbeat"]
    return heartbeat


async def test_heartbeat_reports_backlog_age_losses_alarm_and_devices(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    identity = Identity(creds.agent_id, creds.store_id)
    # A cap so small that the first kept (never-dropped) event puts the outbox over it.
    async with await Outbox.open(tmp_path / "o.db", identity, max_bytes=1) as outbox:
        old = datetime.now(UTC) - timedelta(minutes=5)
        await outbox.append("scanner-1", SCAN, occurred_at=old)
        status = DeviceStatusPayload(state="online", condition="connected")
        await outbox.append("printer-till", status)
        await outbox.count_loss("scanner_flood", 7)
        client = IngestClient(creds)
        drain = DrainWorker(outbox, client)
        loop = HeartbeatLoop(outbox, client, drain, lambda: [PRINTER])
        await loop.beat()
        await client.close()
        stats = await outbox.stats()

    beat = await _latest_heartbeat(cloud)
    assert beat["backlog_events"] == stats.backlog_events >= 1
    assert beat["outbox_over_cap"] is True
    assert beat["losses"] == stats.losses
    assert dict(stats.losses).get("scanner_flood") == 7
    assert beat["dead_letters"] == 0
    assert beat["next_seq"] == stats.next_seq
    assert beat["devices"] == [PRINTER.model_dump(mode="json")]
    age = beat["oldest_unsynced_age_s"]
    assert isinstance(age, float)
    assert age >= 0
    # The cloud's clock answered the beat, so the agent now knows its offset (same host: tiny).
    assert loop.clock_offset_s is not None
    assert abs(loop.clock_offset_s) < 5
    assert loop.last_error is None


async def test_a_failed_beat_is_remembered_and_the_next_one_succeeds(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    async with await Outbox.open(tmp_path / "o.db", Identity(creds.agent_id, creds.store_id)) as ob:
        client = IngestClient(creds)
        loop = HeartbeatLoop(ob, client, DrainWorker(ob, client), list, interval_s=0.05)
        port = cloud.port
        await cloud.stop()
        task = asyncio.create_task(loop.run())
        async with asyncio.timeout(10):
            while loop.last_error is None:
                await asyncio.sleep(0.02)
        restarted = await start_cloud(
            CloudConfig(db_url=cloud.config.db_url, admin_token=ADMIN, port=port)
        )
        try:
            async with asyncio.timeout(10):
                while loop.last_ok_at is None:
                    await asyncio.sleep(0.02)
            assert loop.last_error is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
            await restarted.stop()


async def test_the_drain_body_is_a_valid_event_batch(tmp_path: Path) -> None:
    identity = Identity("agent-1", "store-1")
    async with await Outbox.open(tmp_path / "o.db", identity) as outbox:
        for _ in range(3):
            await outbox.append("scanner-1", SCAN)
        batch = await outbox.read_batch(100, 1 << 20)
    parsed = EventBatch.model_validate_json(gzip.decompress(_gzip_batch(batch)))
    assert [event.seq for event in parsed.events] == [1, 2, 3]
    assert {event.kind for event in parsed.events} == {"scan"}
