"""POST /v1/events over loopback HTTP: one verdict per event, permanent dedupe, hard limits."""

import gzip
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from cloud_helpers import MAX_BODY_BYTES, Agent, Client, admin_get, post_events

from cloud.batch import MISMATCH_REASON
from cloud.keys import COUNTERS, INGEST_GATE
from protocol.constants import MAX_BATCH_EVENTS
from protocol.wire import BatchResponse


def statuses(answer: Any) -> list[str]:
    return [result.status for result in BatchResponse.model_validate(answer).results]


async def stored_count(client: Client, store_id: str = "store-1") -> int:
    count: int = (await admin_get(client, f"/api/events/count?store_id={store_id}"))["count"]
    return count


async def test_valid_events_are_accepted_and_stored(client: Client, agent: Agent) -> None:
    events = [agent.event(seq) for seq in (1, 2, 3)]
    status, answer = await post_events(client, agent, events)
    assert status == 200
    assert answer["results"] == [
        {"status": "accepted", "event_id": e["event_id"], "reason": None} for e in events
    ]
    listed = await admin_get(client, "/api/events?store_id=store-1")
    assert [item["event"] for item in listed["events"]] == events


async def test_resent_batch_is_all_duplicate(client: Client, agent: Agent) -> None:
    events = [agent.event(seq) for seq in (1, 2)]
    await post_events(client, agent, events)
    status, answer = await post_events(client, agent, events)
    assert status == 200
    assert statuses(answer) == ["duplicate", "duplicate"]
    assert await stored_count(client) == 2


async def test_duplicate_within_one_batch(client: Client, agent: Agent) -> None:
    event = agent.event(1)
    status, answer = await post_events(client, agent, [event, agent.event(2), event])
    assert status == 200
    assert statuses(answer) == ["accepted", "accepted", "duplicate"]
    assert await stored_count(client) == 2


async def test_overlapping_resend_stores_only_the_new_events(client: Client, agent: Agent) -> None:
    # A batch re-cut after a lost answer: part resend, part new. The fast path (one insert
    # for the whole batch) must fall back and tell them apart, counting only the new ones.
    first = [agent.event(seq) for seq in (1, 2)]
    await post_events(client, agent, first)
    status, answer = await post_events(client, agent, [first[1], agent.event(3), agent.event(4)])
    assert status == 200
    assert statuses(answer) == ["duplicate", "accepted", "accepted"]
    assert await stored_count(client) == 4
    listed = await admin_get(client, "/api/events?store_id=store-1")
    assert [item["event"]["seq"] for item in listed["events"]] == [1, 2, 3, 4]


async def test_event_for_another_store_is_rejected_never_stored(
    client: Client, agent: Agent
) -> None:
    events = [
        agent.event(1, store_id="store-2"),
        agent.event(2, agent_id="agt-someone-else"),
        agent.event(3),
    ]
    status, answer = await post_events(client, agent, events)
    assert status == 200
    results = answer["results"]
    assert statuses(answer) == ["rejected", "rejected", "accepted"]
    assert results[0]["reason"] == results[1]["reason"] == MISMATCH_REASON
    assert await stored_count(client) == 1
    assert await stored_count(client, "store-2") == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"payload": {"raw_b64": "QQ=="}}, "payload.text: Field required"),
        ({"seq": 0}, "seq: Input should be greater than or equal to 1"),
        ({"event_id": "0190b6a2-0000-4000-8000-000000000000"}, "event_id: Value error, event_id"),
        ({"occurred_at": "2024-05-01T10:00:00+02:00"}, "occurred_at: Value error, occurred_at"),
        ({"kind": "teleport"}, "kind: unknown event kind"),
        ({"schema": 99}, "schema: Value error, unsupported schema version 99"),
        ({"extra": True}, "extra: Extra inputs are not permitted"),
        ({"seq": 2**63}, "seq: must be at most 9223372036854775807"),
    ],
)
async def test_invalid_event_is_rejected_with_a_reason_naming_the_field(
    client: Client, agent: Agent, change: dict[str, Any], reason: str
) -> None:
    status, answer = await post_events(
        client, agent, [{**agent.event(1), **change}, agent.event(2)]
    )
    assert status == 200
    bad, good = answer["results"]
    assert bad["status"] == "rejected"
    assert bad["reason"].startswith(reason), bad["reason"]
    assert good["status"] == "accepted"


async def test_non_object_and_kindless_events_are_rejected_in_place(
    client: Client, agent: Agent
) -> None:
    kindless = agent.event(2)
    del kindless["kind"]
    status, answer = await post_events(client, agent, [42, kindless, agent.event(3)])
    assert status == 200
    assert [(r["status"], r["reason"]) for r in answer["results"]] == [
        ("rejected", "event must be a JSON object"),
        ("rejected", "kind: missing"),
        ("accepted", None),
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[]", 'body must be a JSON object {"events": [...]}'),
        (b'{"events": {}}', 'body must be a JSON object {"events": [...]}'),
        (b'{"batch": []}', 'body must be a JSON object {"events": [...]}'),
        (b'{"events": [], "more": 1}', 'body must have only the key "events"'),
        (b'{"events": []}', "batch is empty"),
        (
            orjson.dumps({"events": [0] * (MAX_BATCH_EVENTS + 1)}),
            f"batch has {MAX_BATCH_EVENTS + 1} events, more than {MAX_BATCH_EVENTS}",
        ),
    ],
)
async def test_malformed_batch_is_400(
    client: Client, agent: Agent, body: bytes, reason: str
) -> None:
    response = await client.post("/v1/events", data=body, headers=agent.auth)
    assert response.status == 400
    assert (await response.json())["error"].startswith(reason)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-real-token"],
)
async def test_bad_token_is_401(client: Client, agent: Agent, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.post("/v1/events", json={"events": [agent.event(1)]}, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in await response.json()
    assert await stored_count(client) == 0


async def test_revoked_token_is_401(client: Client, agent: Agent) -> None:
    assert (await post_events(client, agent, [agent.event(1)]))[0] == 200
    revoke = await client.post(
        f"/api/agents/{agent.agent_id}/revoke", headers={"Authorization": "Bearer test-admin-token"}
    )
    assert await revoke.json() == {"agent_id": agent.agent_id, "revoked": True}
    status, answer = await post_events(client, agent, [agent.event(2)])
    assert status == 401
    assert answer == {"error": "unknown or revoked agent token"}


async def test_oversized_body_is_413(client: Client, agent: Agent) -> None:
    filler = "x" * 4096
    events = [agent.event(seq, payload={"raw_b64": "", "text": filler}) for seq in range(1, 80)]
    body = orjson.dumps({"events": events})
    assert len(body) > MAX_BODY_BYTES
    response = await client.post("/v1/events", data=body, headers=agent.auth)
    assert response.status == 413
    assert (await response.json())["error"] == f"body exceeds {MAX_BODY_BYTES} bytes"
    assert await stored_count(client) == 0


async def test_oversized_chunked_body_is_413(client: Client, agent: Agent) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for _ in range(MAX_BODY_BYTES // 4096 + 1):
            yield b" " * 4096
        yield b"]}"

    # No Content-Length: the limit must hold while reading, not only up front.
    response = await client.post("/v1/events", data=chunks(), headers=agent.auth)
    assert response.status == 413
    assert (await response.json())["error"] == f"body exceeds {MAX_BODY_BYTES} bytes"


async def test_too_many_batches_in_flight_is_503_with_retry_after(
    client: Client, agent: Agent
) -> None:
    gate = client.app[INGEST_GATE]
    gate.in_flight = gate.limit  # as if that many batches were being processed right now
    try:
        status_response = await client.post(
            "/v1/events", json={"events": [agent.event(1)]}, headers=agent.auth
        )
    finally:
        gate.in_flight = 0
    assert status_response.status == 503
    assert 1 <= int(status_response.headers["Retry-After"]) <= 4  # spread, see Overloaded
    assert (await status_response.json())["error"].startswith("busy: ")
    status, _ = await post_events(client, agent, [agent.event(1)])
    assert status == 200


async def test_gzip_batch_is_accepted(client: Client, agent: Agent) -> None:
    events = [agent.event(seq) for seq in range(1, 501)]
    status, answer = await post_events(client, agent, events, gzipped=True)
    assert status == 200
    assert statuses(answer) == ["accepted"] * 500


async def test_gzip_bomb_is_413_without_inflating(client: Client, agent: Agent) -> None:
    # 16 MiB of zeros gzip to ~16 KiB: far under the body limit as sent, 64× over it inflated.
    bomb = gzip.compress(b"0" * (16 * 1024 * 1024), 9)
    assert len(bomb) < MAX_BODY_BYTES
    response = await client.post(
        "/v1/events", data=bomb, headers={**agent.auth, "Content-Encoding": "gzip"}
    )
    assert response.status == 413
    assert (await response.json())["error"] == f"decompressed body exceeds {MAX_BODY_BYTES} bytes"


@pytest.mark.parametrize(
    ("encoding", "body", "status", "reason"),
    [
        ("gzip", b"definitely not gzip", 400, "body is not valid gzip"),
        ("gzip", gzip.compress(b'{"events": []}')[:-12], 400, "body is truncated gzip"),
        ("gzip", gzip.compress(b"{}") + b"tail", 400, "body has data after the gzip stream"),
        ("br", b"...", 415, "unsupported Content-Encoding 'br'"),
    ],
)
async def test_bad_encodings(
    client: Client, agent: Agent, encoding: str, body: bytes, status: int, reason: str
) -> None:
    response = await client.post(
        "/v1/events", data=body, headers={**agent.auth, "Content-Encoding": encoding}
    )
    assert response.status == status
    assert (await response.json())["error"].startswith(reason)


async def test_bad_requests_and_outcomes_are_counted(client: Client, agent: Agent) -> None:
    await client.post("/v1/events", data=b"{", headers=agent.auth)
    await client.post("/v1/events", data=b"{}")
    event = agent.event(1)
    await post_events(client, agent, [event, event, agent.event(2, store_id="elsewhere")])
    counters = client.app[COUNTERS]
    assert counters.bad_requests["not_json"] == 1
    assert counters.bad_requests["no_token"] == 1
    assert counters.events == {"accepted": 1, "duplicate": 1, "rejected_mismatch": 1}
