"""POST /v1/heartbeat over loopback HTTP: the latest report per agent, visible to admins."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cloud_helpers import ADMIN, Agent, Client, admin_get

from protocol.wire import MAX_AGE_S, MAX_BACKLOG_EVENTS, HeartbeatResponse


def heartbeat(backlog: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "sent_at": datetime.now(UTC).isoformat(),
        "version": "0.1.0",
        "backlog_events": backlog,
        "backlog_bytes": backlog * 250,
        **extra,
    }


async def test_heartbeat_answers_with_server_time(client: Client, agent: Agent) -> None:
    response = await client.post("/v1/heartbeat", json=heartbeat(), headers=agent.auth)
    assert response.status == 200
    answer = HeartbeatResponse.model_validate(await response.json())
    assert answer.agent_id == agent.agent_id
    assert abs(answer.server_time - datetime.now(UTC)) < timedelta(seconds=5)


async def test_latest_heartbeat_shows_in_store_list_and_detail(
    client: Client, agent: Agent
) -> None:
    await client.post("/v1/heartbeat", json=heartbeat(backlog=3), headers=agent.auth)
    devices = [
        {
            "device_id": "scanner-front",
            "kind": "scanner",
            "state": "online",
            "counters": {"frames": 12},
        },
        {
            "device_id": "printer-till",
            "kind": "printer",
            "state": "degraded",
            "condition": "paper_low",
        },
    ]
    latest = heartbeat(backlog=40, oldest_unsynced_age_s=12.5, losses={"flood": 2}, devices=devices)
    response = await client.post("/v1/heartbeat", json=latest, headers=agent.auth)
    assert response.status == 200

    (store,) = (await admin_get(client, "/api/stores"))["stores"]
    assert store["store_id"] == "store-1"
    assert store["agents"] == 1
    assert store["backlog_events"] == 40
    assert store["oldest_unsynced_age_s"] == 12.5
    assert store["last_heartbeat_at"] is not None

    detail = await admin_get(client, "/api/stores/store-1")
    (shown,) = detail["agents"]
    assert shown["agent_id"] == agent.agent_id
    assert shown["heartbeat"]["losses"] == {"flood": 2}
    assert [d["device_id"] for d in shown["heartbeat"]["devices"]] == [
        "scanner-front",
        "printer-till",
    ]
    assert shown["heartbeat"]["devices"][1]["condition"] == "paper_low"
    assert shown["last_heartbeat_at"] == store["last_heartbeat_at"]


async def test_malformed_heartbeat_is_400(client: Client, agent: Agent) -> None:
    response = await client.post("/v1/heartbeat", json=heartbeat(backlog=-1), headers=agent.auth)
    assert response.status == 400
    assert (await response.json())["error"].startswith("backlog_events: Input should be")


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        # Past int64 but within orjson's u64: the model's bound stops it.
        ("backlog_events", b"9223372036854775808", "backlog_events: Input should be less"),
        # Past u64: parsed as a float, refused by the model, never a 500.
        ("losses", b'{"flood": 1' + b"0" * 30 + b"}", "losses.flood: "),
    ],
)
async def test_out_of_range_heartbeat_is_400(
    client: Client, agent: Agent, field: str, raw: bytes, reason: str
) -> None:
    # JSON numbers this large cannot be built with orjson, so splice the raw text in.
    body = orjson.dumps({**heartbeat(), field: None})
    body = body.replace(f'"{field}":null'.encode(), f'"{field}":'.encode() + raw)
    response = await client.post("/v1/heartbeat", data=body, headers=agent.auth)
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)


async def test_heartbeat_needs_an_agent_token(client: Client) -> None:
    response = await client.post(
        "/v1/heartbeat", json=heartbeat(), headers={"Authorization": "Bearer nope"}
    )
    assert response.status == 401


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"])
async def test_a_refusal_time_utc_cannot_hold_is_refused(
    client: Client, agent: Agent, at: str
) -> None:
    # Valid ISO 8601, but year 0 or 10000 in UTC: once stored, every read of the store's
    # config status failed (500), so it is refused at the door.
    body = heartbeat(config_error={"reason": "bad config", "at": at})
    response = await client.post("/v1/heartbeat", json=body, headers=agent.auth)
    assert response.status == 400
    assert (await response.json())["error"] == "config_error.at: out of range in UTC"
    assert (await client.get(f"/api/stores/{agent.store_id}/config", headers=ADMIN)).status == 200


async def test_fleet_totals_cannot_be_overflowed_by_a_few_agents(
    client: Client, enroll: Callable[..., Awaitable[Agent]]
) -> None:
    # Two agents once reported int64-max backlogs and the store list's SUM overflowed (503
    # for the whole fleet), and an age of 1e308 stopped the console's evaluator; the bounds
    # are far past any real outbox and keep a fleet's totals within 64 bits.
    huge = {"dead_letters": MAX_BACKLOG_EVENTS, "oldest_unsynced_age_s": MAX_AGE_S}
    for agent in [await enroll(), await enroll()]:
        body = heartbeat(backlog=MAX_BACKLOG_EVENTS, **huge)
        assert (await client.post("/v1/heartbeat", json=body, headers=agent.auth)).status == 200
        too_big = MAX_BACKLOG_EVENTS + 1
        age = "oldest_unsynced_age_s"
        for field, value in (("backlog_events", too_big), ("dead_letters", too_big),
                             (age, 1e308), (age, -1.0)):  # fmt: skip
            response = await client.post(
                "/v1/heartbeat", json={**body, field: value}, headers=agent.auth
            )
            assert response.status == 400, (field, value)
            assert (await response.json())["error"].startswith(f"{field}: Input should be")
    (store,) = (await admin_get(client, "/api/stores"))["stores"]
    assert store["backlog_events"] == 2 * MAX_BACKLOG_EVENTS
