"""Load shedding, shared state between replicas, /metrics and fleet paging, over loopback HTTP.

"Replicas" here are two apps over one database in this process: what matters is that
neither keeps state the other needs, which the multi-process test in tests/e2e proves again.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cloud_helpers import ADMIN, ADMIN_TOKEN, Agent, Client, admin_get, new_code, post_events
from pytest_aiohttp import AiohttpClient

from cloud.app import create_app
from cloud.config import CloudConfig

Replicas = Callable[..., Awaitable[tuple[Client, Client]]]


def beat() -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"sent_at": now, "version": "0.1.0", "backlog_events": 0, "backlog_bytes": 0}


@pytest.fixture
def replicas(config: CloudConfig, aiohttp_client: AiohttpClient) -> Replicas:
    async def start(**settings: object) -> tuple[Client, Client]:
        changed = dataclasses.replace(config, **settings)  # type: ignore[arg-type]
        return await aiohttp_client(create_app(changed)), await aiohttp_client(create_app(changed))

    return start


async def enroll_on(client: Client, store_id: str = "store-1") -> Agent:
    code = await new_code(client, store_id)
    response = await client.post("/v1/enroll", json={"code": code})
    assert response.status == 200, await response.text()
    data = await response.json()
    return Agent(data["agent_id"], data["store_id"], data["token"])


async def test_an_agent_over_its_rate_gets_429_on_every_replica(replicas: Replicas) -> None:
    a, b = await replicas(agent_events_per_s=1.0, agent_events_burst=1000.0)
    agent = await enroll_on(a)
    for start in range(1, 1001, 250):
        status, _ = await post_events(a, agent, [agent.event(s) for s in range(start, start + 250)])
        assert status == 200
    # The bucket is a database row: the other replica sees it drained.
    response = await b.post(
        "/v1/events", json={"events": [agent.event(1001)] * 10}, headers=agent.auth
    )
    assert response.status == 429
    # 10 events at 1/s, less the second or so the batches above took to refill.
    assert 8 <= int(response.headers["Retry-After"]) <= 10
    assert "over its limit of 1 events/s" in (await response.json())["error"]
    metrics = await (await b.get("/metrics", headers=ADMIN)).text()
    assert 'storeedge_shed_requests_total{reason="rate_limited"} 1.0' in metrics


async def test_code_from_one_replica_enrolls_on_the_other_once(replicas: Replicas) -> None:
    a, b = await replicas()
    code = await new_code(a, "store-x")
    first = await b.post("/v1/enroll", json={"code": code})
    second = await a.post("/v1/enroll", json={"code": code})
    assert first.status == 200
    assert second.status == 403
    assert (await second.json())["error"] == "enrollment code already used"


async def test_heartbeat_interval_holds_across_replicas(replicas: Replicas) -> None:
    a, b = await replicas(heartbeat_min_interval_s=30.0)
    agent = await enroll_on(a)
    assert (await a.post("/v1/heartbeat", json=beat(), headers=agent.auth)).status == 200
    again = await b.post("/v1/heartbeat", json=beat(), headers=agent.auth)
    assert again.status == 429
    assert again.headers["Retry-After"] == "30"


async def test_events_in_flight_past_the_cap_get_503(client: Client, agent: Agent) -> None:
    # The process-wide cap is per replica by design: it bounds this process's memory.
    from cloud.keys import AGENT_GATE

    gate = client.app[AGENT_GATE]
    gate.in_flight = gate.limit
    try:
        response = await client.post(
            "/v1/heartbeat", json={"backlog_events": 0}, headers=agent.auth
        )
    finally:
        gate.in_flight = 0
    assert response.status == 503
    assert 1 <= int(response.headers["Retry-After"]) <= 4
    assert (await response.json())["error"] == "busy: 1024 requests in flight, retry shortly"


async def test_metrics_need_the_admin_token_and_tell_what_happened(
    client: Client, agent: Agent
) -> None:
    assert (await client.get("/metrics")).status == 401
    event = agent.event(1)
    await post_events(client, agent, [event, event, agent.event(2, store_id="elsewhere")])
    await client.post("/v1/heartbeat", json=beat(), headers=agent.auth)
    await client.post("/v1/events", data=b"{", headers=agent.auth)
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    expected = [
        'storeedge_ingest_events_total{reason="",result="accepted"} 1.0',
        'storeedge_ingest_events_total{reason="",result="duplicate"} 1.0',
        'storeedge_ingest_events_total{reason="mismatch",result="rejected"} 1.0',
        'storeedge_bad_requests_total{reason="not_json"} 1.0',
        'storeedge_http_requests_total{route="events",status="200"} 1.0',
        'storeedge_http_requests_total{route="events",status="400"} 1.0',
        'storeedge_http_requests_total{route="heartbeat",status="200"} 1.0',
        "storeedge_ingest_batch_events_count 1.0",
        'storeedge_ingest_batch_events_bucket{le="5.0"} 1.0',
        "storeedge_stores 1.0",
        "storeedge_agents 1.0",
        "storeedge_agents_online 1.0",
        'storeedge_db_connections{state="busy"}',
        "storeedge_db_waiting 0.0",
        'storeedge_inflight_requests{gate="events"} 0.0',
        'storeedge_http_request_duration_seconds_bucket{le="0.1",route="heartbeat"}',
    ]
    missing = [line for line in expected if line not in text]
    assert not missing, text


async def test_store_list_pages_by_id_with_filters(client: Client) -> None:
    for n in range(5):
        await new_code(client, f"eu-{n}")
        await new_code(client, f"us-{n}")
    first = await admin_get(client, "/api/stores?limit=4")
    assert [s["store_id"] for s in first["stores"]] == ["eu-0", "eu-1", "eu-2", "eu-3"]
    assert first["next_after"] == "eu-3"
    rest = await admin_get(client, "/api/stores?limit=100&after=eu-3")
    assert len(rest["stores"]) == 6
    assert rest["next_after"] is None
    us = await admin_get(client, "/api/stores?prefix=us-")
    assert [s["store_id"] for s in us["stores"]] == [f"us-{n}" for n in range(5)]
    silent = await admin_get(client, "/api/stores?prefix=eu-&silent_for_s=60")
    assert len(silent["stores"]) == 5  # none of them ever sent a heartbeat
    for query in ("limit=0", "limit=1001", "after=no%20spaces", "silent_for_s=-1"):
        response = await client.get(f"/api/stores?{query}", headers=ADMIN)
        assert response.status == 400, query


async def test_enroll_codes_over_the_admin_api(client: Client) -> None:
    body = {"store_id": "store-api", "ttl_s": 600}
    assert (await client.post("/api/enroll-codes", json=body)).status == 401
    response = await client.post("/api/enroll-codes", json=body, headers=ADMIN)
    assert response.status == 200
    issued = await response.json()
    assert issued["store_created"] is True
    assert issued["expires_at"].endswith("Z")
    enrolled = await client.post("/v1/enroll", json={"code": issued["code"]})
    assert enrolled.status == 200
    assert (await enrolled.json())["store_id"] == "store-api"
    bad = await client.post("/api/enroll-codes", json={"store_id": "no spaces"}, headers=ADMIN)
    assert bad.status == 400
    assert (await bad.json())["error"].startswith("store_id: invalid store id")


async def test_big_batches_are_bounded_by_bytes_in_flight(client: Client, agent: Agent) -> None:
    from cloud.keys import INGEST_GATE

    gate = client.app[INGEST_GATE]
    assert gate.limit_bytes is not None
    gate.bytes_in_flight = gate.limit_bytes - 100  # as if big batches were being validated
    try:
        status, _ = await post_events(client, agent, [agent.event(1)])
    finally:
        gate.bytes_in_flight = 0
    assert status == 503
    status, _ = await post_events(client, agent, [agent.event(1)])
    assert status == 200


def test_config_refuses_a_burst_smaller_than_a_batch() -> None:
    with pytest.raises(ValueError, match="agent_events_burst must be at least 1000"):
        CloudConfig(admin_token=ADMIN_TOKEN, agent_events_burst=10)
