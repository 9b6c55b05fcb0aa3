"""POST /v1/enroll over loopback HTTP: codes are single-use, expiring and atomic."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from cloud_helpers import STORE, Agent, Client, new_code

from protocol.wire import EnrollResponse


async def test_enroll_returns_credentials_for_the_code_store(client: Client) -> None:
    code = await new_code(client, "store-7")
    response = await client.post(
        "/v1/enroll", json={"code": code, "agent_info": {"hostname": "box-7", "version": "0.1"}}
    )
    assert response.status == 200
    answer = EnrollResponse.model_validate(await response.json())
    assert answer.store_id == "store-7"
    assert len(answer.token) >= 40
    heartbeat = await client.post(
        "/v1/heartbeat",
        json={
            "sent_at": datetime.now(UTC).isoformat(),
            "version": "0.1",
            "backlog_events": 0,
            "backlog_bytes": 0,
        },
        headers={"Authorization": f"Bearer {answer.token}"},
    )
    assert heartbeat.status == 200


async def test_code_is_typed_loosely(client: Client) -> None:
    code = await new_code(client)
    typed = " " + code.lower().replace("-", " ") + " "
    response = await client.post("/v1/enroll", json={"code": typed})
    assert response.status == 200


async def test_used_code_is_refused(client: Client) -> None:
    code = await new_code(client)
    assert (await client.post("/v1/enroll", json={"code": code})).status == 200
    again = await client.post("/v1/enroll", json={"code": code})
    assert again.status == 403
    assert await again.json() == {"error": "enrollment code already used"}


async def test_expired_code_is_refused(client: Client) -> None:
    code = await new_code(client, now=datetime.now(UTC) - timedelta(hours=25))
    response = await client.post("/v1/enroll", json={"code": code})
    assert response.status == 403
    assert await response.json() == {"error": "enrollment code expired"}


async def test_unknown_code_is_refused(client: Client) -> None:
    response = await client.post("/v1/enroll", json={"code": "AAAA-BBBB-CCCC-DDDD"})
    assert response.status == 403
    assert await response.json() == {"error": "unknown enrollment code"}


async def test_racing_enrollments_spend_a_code_once(client: Client) -> None:
    code = await new_code(client)
    responses = await asyncio.gather(
        *(client.post("/v1/enroll", json={"code": code}) for _ in range(8))
    )
    assert sorted(r.status for r in responses) == [200] + [403] * 7


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b'{"agent_info": {}}', "code: Field required"),
        (b'{"code": "ab"}', "code: String should have at least 4 characters"),
        (b'{"code": "ABCD-EFGH", "extra": 1}', "extra: Extra inputs are not permitted"),
    ],
)
async def test_malformed_enroll_body_is_400(client: Client, body: bytes, reason: str) -> None:
    response = await client.post(
        "/v1/enroll", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)


async def test_second_agent_of_a_store_gets_its_own_identity(
    enroll: Callable[..., Awaitable[Agent]],
) -> None:
    first, second = await enroll(), await enroll()
    assert first.store_id == second.store_id == STORE
    assert first.agent_id != second.agent_id
    assert first.token != second.token
