"""Admin API and health over loopback HTTP: auth, fleet views, event paging and filters."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from cloud_helpers import ADMIN, Agent, Client, admin_get, post_events
from pytest_aiohttp import AiohttpClient

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.keys import STORAGE

ADMIN_PATHS = [
    "/api/stores",
    "/api/stores/store-1",
    "/api/events",
    "/api/events/count",
]


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "test-admin-token"])
async def test_admin_api_requires_the_admin_token(
    client: Client, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert "error" in await response.json()


async def test_agent_token_is_not_an_admin_token(client: Client, agent: Agent) -> None:
    response = await client.get("/api/stores", headers=agent.auth)
    assert response.status == 401


async def test_store_list_and_unknown_store(client: Client, agent: Agent) -> None:
    await post_events(client, agent, [agent.event(1), agent.event(2)])
    (store,) = (await admin_get(client, "/api/stores"))["stores"]
    assert store["events_total"] == 2
    assert store["created_at"].endswith("Z")
    response = await client.get("/api/stores/store-404", headers=ADMIN)
    assert response.status == 404
    assert await response.json() == {"error": "unknown store 'store-404'"}


async def test_events_page_by_cursor(client: Client, agent: Agent) -> None:
    events = [agent.event(seq) for seq in range(1, 8)]
    await post_events(client, agent, events)
    seen: list[Any] = []
    after = None
    pages = 0
    while True:
        query = "/api/events?store_id=store-1&limit=3" + (f"&after={after}" if after else "")
        page = await admin_get(client, query)
        pages += 1
        seen += page["events"]
        after = page["next_after"]
        if after is None:
            break
        assert after == page["events"][-1]["cursor"]
    assert pages == 3
    assert [item["event"] for item in seen] == events
    cursors = [item["cursor"] for item in seen]
    assert cursors == sorted(cursors)
    assert all(item["received_at"].endswith("Z") for item in seen)


async def test_a_full_last_page_has_no_next(client: Client, agent: Agent) -> None:
    await post_events(client, agent, [agent.event(1), agent.event(2)])
    page = await admin_get(client, "/api/events?limit=2")
    assert len(page["events"]) == 2
    assert page["next_after"] is None


async def test_events_filter_by_store_kind_and_since(
    client: Client, agent: Agent, enroll: Any
) -> None:
    other: Agent = await enroll("store-2")
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    status_event = agent.event(
        2,
        kind="device.status",
        payload={"state": "online", "condition": "connected"},
    )
    await post_events(client, agent, [agent.event(1, occurred_at=old), status_event])
    await post_events(client, other, [other.event(1)])

    def ids(page: Any) -> list[str]:
        return [item["event"]["store_id"] + ":" + item["event"]["kind"] for item in page["events"]]

    assert ids(await admin_get(client, "/api/events?store_id=store-2")) == ["store-2:scan"]
    assert ids(await admin_get(client, "/api/events?kind=device.status")) == [
        "store-1:device.status"
    ]
    assert ids(await admin_get(client, "/api/events?store_id=store-1&kind=scan")) == [
        "store-1:scan"
    ]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = await admin_get(client, "/api/events?store_id=store-1&since=" + since)
    assert ids(recent) == ["store-1:device.status"]
    # The same instant written with "Z", and with an unencoded "+" that arrives as a space.
    zulu = since.replace("+00:00", "Z")
    assert ids(await admin_get(client, f"/api/events?store_id=store-1&since={zulu}")) == ids(recent)
    assert ids(await admin_get(client, f"/api/events?store_id=store-1&since={since}")) == ids(
        recent
    )


async def test_count_by_store_and_kind(client: Client, agent: Agent, enroll: Any) -> None:
    other: Agent = await enroll("store-2")
    status_event = agent.event(
        3, kind="device.status", payload={"state": "offline", "condition": "disconnected"}
    )
    await post_events(client, agent, [agent.event(1), agent.event(2), status_event])
    await post_events(client, other, [other.event(1)])

    async def count(query: str) -> int:
        n: int = (await admin_get(client, "/api/events/count" + query))["count"]
        return n

    assert await count("") == 4
    assert await count("?store_id=store-1") == 3
    assert await count("?store_id=store-1&kind=scan") == 2
    assert await count("?kind=device.status") == 1
    assert await count("?store_id=nowhere") == 0


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "limit: must be 1..1000"),
        ("limit=1001", "limit: must be 1..1000"),
        ("limit=ten", "limit: not an integer"),
        ("after=-1", "after: must be 0.."),
        ("after=99999999999999999999999", "after: must be 0.."),
        ("since=yesterday", "since: not an ISO 8601 date-time"),
        ("since=2024-05-01T00:00:00", "since: needs a timezone"),
        ("since=0001-01-01T00:00:00%2B14:00", "since: out of range in UTC"),  # was a 500
        ("since=9999-12-31T23:00:00-14:00", "since: out of range in UTC"),
        ("kind=teleport", "kind: unknown event kind"),
        ("store_id=bad%20store", "store_id: invalid store_id"),
    ],
)
async def test_invalid_query_is_400(client: Client, query: str, reason: str) -> None:
    response = await client.get("/api/events?" + query, headers=ADMIN)
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_healthz_is_503_when_storage_fails(client: Client) -> None:
    await client.app[STORAGE].close()
    response = await client.get("/healthz")
    assert response.status == 503
    assert (await response.json())["status"] == "unavailable"


async def test_storage_failure_in_a_view_is_503_with_retry_after(
    client: Client, agent: Agent
) -> None:
    await client.app[STORAGE].close()
    status_response = await client.get("/api/stores", headers=ADMIN)
    assert status_response.status == 503
    assert status_response.headers["Retry-After"] == "5"
    assert await status_response.json() == {"error": "storage unavailable"}


async def test_unexpected_error_is_an_opaque_json_500(
    config: CloudConfig, aiohttp_client: AiohttpClient
) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app = create_app(config)
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    response = await client.get("/boom")
    assert response.status == 500
    assert await response.json() == {"error": "internal server error"}


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    missing = await client.get("/nope")
    assert missing.status == 404
    assert await missing.json() == {"error": "Not Found"}
    wrong = await client.get("/v1/events")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"
