"""Hostile clients against the real cloud on loopback: slowloris, slow bodies, cross-agent replay.

Forged, revoked and other-store tokens, replayed batches, oversized and gzip-bomb bodies are
tested in test_ingest_api.py and test_token_lifecycle.py; the local status page's LAN refusal
in tests/agent/field/test_status_page_lan.py.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cloud_helpers import ADMIN, ADMIN_TOKEN, STORE, Agent

from cloud.batch import MISMATCH_REASON
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud

DEADLINE_S = 0.5


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[RunningCloud]:
    config = CloudConfig(
        db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN_TOKEN, port=0,
        header_timeout_s=DEADLINE_S, body_timeout_s=DEADLINE_S,
    )  # fmt: skip
    async with await start_cloud(config) as running:
        yield running


async def _enroll(cloud: RunningCloud, store: str = STORE) -> Agent:
    code = (await cloud.create_enroll_code(store)).code
    async with (
        aiohttp.ClientSession() as session,
        session.post(cloud.url + "/v1/enroll", json={"code": code}) as response,
    ):
        data = await response.json()
    return Agent(data["agent_id"], data["store_id"], data["token"])


async def _healthy(cloud: RunningCloud) -> int:
    async with aiohttp.ClientSession() as session, session.get(cloud.url + "/healthz") as r:
        return r.status


async def test_slowloris_connections_are_closed_and_others_still_served(
    cloud: RunningCloud,
) -> None:
    # Many connections, each dribbling a request head that never ends.
    conns = [await asyncio.open_connection("127.0.0.1", cloud.port) for _ in range(50)]
    started = time.monotonic()
    for _, writer in conns:
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    for _ in range(3):
        await asyncio.sleep(DEADLINE_S / 4)
        for _, writer in conns:
            writer.write(b"a")  # still trickling: progress is not completion
    assert await _healthy(cloud) == 200, "a slowloris crowd kept a normal client out"
    closed = await asyncio.gather(*(reader.read() for reader, _ in conns))
    elapsed = time.monotonic() - started
    assert closed == [b""] * len(conns), "a slow connection got an answer instead of a close"
    assert elapsed < DEADLINE_S * 4
    assert cloud.counters.bad_requests["slow_headers"] == len(conns)
    for _, writer in conns:
        writer.close()


async def test_a_prompt_request_on_a_fresh_connection_is_not_cut(cloud: RunningCloud) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cloud.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    await asyncio.sleep(DEADLINE_S * 2)  # past the deadline: the connection has spoken
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    assert cloud.counters.bad_requests["slow_headers"] == 0


async def test_a_body_that_trickles_is_answered_408(cloud: RunningCloud) -> None:
    agent = await _enroll(cloud)
    reader, writer = await asyncio.open_connection("127.0.0.1", cloud.port)
    writer.write(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {agent.token}\r\nContent-Length: 5000\r\n\r\n".encode()
        + b'{"events": ['
    )
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S * 6)
    assert head.startswith(b"HTTP/1.1 408"), head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert b"request body too slow" in await reader.readexactly(length)
    assert time.monotonic() - started < DEADLINE_S * 4
    assert cloud.counters.bad_requests["slow_body"] == 1
    writer.close()


async def test_a_batch_replayed_under_another_agents_token_is_rejected(
    cloud: RunningCloud,
) -> None:
    victim = await _enroll(cloud, "store-victim")
    attacker = await _enroll(cloud, "store-attacker")
    batch = {"events": [victim.event(1), victim.event(2)]}
    async with aiohttp.ClientSession() as session:
        async with session.post(cloud.url + "/v1/events", json=batch, headers=victim.auth) as r:
            assert [x["status"] for x in (await r.json())["results"]] == ["accepted"] * 2
        # The attacker captured the victim's batch and replays it with its own token, or
        # rewrites the ids to make it look like theirs (store-victim events, new event ids).
        for events in (batch["events"], [victim.event(3), victim.event(4)]):
            async with session.post(
                cloud.url + "/v1/events", json={"events": events}, headers=attacker.auth
            ) as r:
                results = (await r.json())["results"]
            assert {x["reason"] for x in results} == {MISMATCH_REASON}
        async with session.get(
            cloud.url + "/api/events/count?store_id=store-victim", headers=ADMIN
        ) as r:
            assert (await r.json())["count"] == 2
    assert cloud.counters.events["rejected_mismatch"] == 4
