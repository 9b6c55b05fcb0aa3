"""The drain worker against the real cloud on loopback: results applied, faults survived."""

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker, SyncState
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud
from hardware.netfault import Fault, FaultProxy
from protocol import ScanPayload

ADMIN = "drain-admin"
SCAN = ScanPayload(raw_b64="QUJD", text="ABC")


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[RunningCloud]:
    config = CloudConfig(
        db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0,
        max_body_bytes=64 * 1024,
    )  # fmt: skip
    async with await start_cloud(config) as running:
        yield running


async def _enroll(cloud: RunningCloud, store: str = "store-1") -> Credentials:
    code = (await cloud.create_enroll_code(store)).code
    async with (
        aiohttp.ClientSession() as session,
        session.post(cloud.url + "/v1/enroll", json={"code": code}) as response,
    ):
        data = await response.json()
    return Credentials(cloud.url, data["agent_id"], data["store_id"], data["token"])


async def _admin(cloud: RunningCloud, method: str, path: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cloud.url + path, headers=headers) as response,
    ):
        data: dict[str, object] = await response.json()
        return data


async def _run_until(worker: DrainWorker, done: Callable[[], object], timeout: float = 10) -> None:
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not await done():  # type: ignore[misc]
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_backlog_arrives_in_seq_order_and_leaves_the_outbox(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    async with await Outbox.open(tmp_path / "o.db", Identity(creds.agent_id, creds.store_id)) as ob:
        for _ in range(5):
            await asyncio.gather(*(ob.append("scanner-1", SCAN) for _ in range(100)))
        client = IngestClient(creds)
        worker = DrainWorker(ob, client, max_events=37)

        async def empty() -> bool:
            return (await ob.stats()).backlog_events == 0

        await _run_until(worker, empty)
        await client.close()
    page = await _admin(cloud, "GET", "/api/events?store_id=store-1&limit=1000")
    events = [item["event"] for item in page["events"]]  # type: ignore[attr-defined]
    # The ingest cursor order is arrival order: it must be seq order (guarantee 6).
    assert [e["seq"] for e in events] == list(range(1, 501))
    assert worker.counters.accepted == 500
    assert worker.counters.batches == 14  # ceil(500 / 37)


async def test_events_the_cloud_rejects_go_to_dead_letters_and_the_rest_are_delivered(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    path = tmp_path / "o.db"
    # Events stamped with another store's id are rejected by the cloud, never stored.
    async with await Outbox.open(path, Identity(creds.agent_id, "store-other")) as ob:
        await ob.append("scanner-1", SCAN)
    async with await Outbox.open(path, Identity(creds.agent_id, creds.store_id)) as ob:
        await ob.append("scanner-1", SCAN)
        client = IngestClient(creds)
        worker = DrainWorker(ob, client)

        async def empty() -> bool:
            return (await ob.stats()).backlog_events == 0

        await _run_until(worker, empty)
        await client.close()
        stats = await ob.stats()
    assert stats.dead_letters == 1
    assert worker.counters.rejected == 1
    assert worker.counters.accepted == 1
    count = await _admin(cloud, "GET", "/api/events/count?store_id=store-1")
    assert count["count"] == 1


async def test_an_event_too_large_for_the_cloud_is_isolated_by_splitting_the_batch(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    # Incompressible, and bigger than the cloud's 64 KiB body limit only together with others.
    chunky = ScanPayload(raw_b64=base64.b64encode(os.urandom(9000)).decode(), text="x")
    async with await Outbox.open(tmp_path / "o.db", Identity(creds.agent_id, creds.store_id)) as ob:
        for _ in range(20):
            await ob.append("scanner-1", chunky)
        client = IngestClient(creds)
        worker = DrainWorker(ob, client, max_events=20, max_bytes=4 * 1024 * 1024)

        async def empty() -> bool:
            return (await ob.stats()).backlog_events == 0

        await _run_until(worker, empty)
        await client.close()
        stats = await ob.stats()
    # Every event fits on its own, so bisection delivers all of them and dead-letters none.
    assert stats.dead_letters == 0
    assert worker.counters.accepted == 20
    assert worker.counters.by_status.get("413", 0) >= 1


async def test_a_revoked_token_keeps_events_buffered_and_backs_off(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    await _admin(cloud, "POST", f"/api/agents/{creds.agent_id}/revoke")
    async with await Outbox.open(tmp_path / "o.db", Identity(creds.agent_id, creds.store_id)) as ob:
        await ob.append("scanner-1", SCAN)
        client = IngestClient(creds)
        worker = DrainWorker(ob, client, backoff_base_s=0.01, backoff_cap_s=0.05)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        state, retries = worker.state, worker.counters.retries
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        assert (await ob.stats()).backlog_events == 1
    assert state is SyncState.UNAUTHORIZED
    # Unauthorized waits at least 5 × the cap between attempts: no hammering.
    assert retries <= 5


async def test_retry_after_from_a_throttling_cloud_is_honoured(
    cloud: RunningCloud, tmp_path: Path
) -> None:
    creds = await _enroll(cloud)
    proxy = FaultProxy(
        cloud.url, lambda path, n: Fault.THROTTLE if n == 1 else Fault.PASS, retry_after_s=1
    )
    url = await proxy.start()
    async with await Outbox.open(tmp_path / "o.db", Identity(creds.agent_id, creds.store_id)) as ob:
        await ob.append("scanner-1", SCAN)
        client = IngestClient(Credentials(url, creds.agent_id, creds.store_id, creds.token))
        worker = DrainWorker(ob, client, backoff_base_s=0.01, backoff_cap_s=0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def empty() -> bool:
            return (await ob.stats()).backlog_events == 0

        await _run_until(worker, empty)
        elapsed = loop.time() - started
        await client.close()
    await proxy.stop()
    assert proxy.injected["throttle"] == 1
    assert elapsed >= 1.0  # the jittered backoff alone would have retried within 50 ms
