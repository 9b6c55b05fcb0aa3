"""Shared helpers of the cloud tests (a plain module: `conftest` is not importable by name)."""

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from cloud.fleet import issue_enroll_code
from cloud.keys import STORAGE
from protocol.ids import uuid7_str

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STORE = "store-1"
# Small enough that the oversize tests stay fast, big enough for a normal batch.
MAX_BODY_BYTES = 256 * 1024

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Agent:
    """Credentials of an agent enrolled in a test."""

    agent_id: str
    store_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def event(self, seq: int, **overrides: Any) -> dict[str, Any]:
        """A valid scan event of this agent, JSON-ready."""
        event: dict[str, Any] = {
            "event_id": uuid7_str(),
            "agent_id": self.agent_id,
            "store_id": self.store_id,
            "seq": seq,
            "device_id": "scanner-front",
            "kind": "scan",
            "occurred_at": datetime.now(UTC).isoformat(),
            "schema": 1,
            "payload": {"raw_b64": "NDAxMjM0NTY3ODkwMQ==", "text": "4012345678901"},
        }
        event.update(overrides)
        return event


async def new_code(client: Client, store_id: str = STORE, **kwargs: Any) -> str:
    """A fresh enrollment code issued through the running app's storage."""
    issued = await issue_enroll_code(client.app[STORAGE], store_id, **kwargs)
    return issued.code


async def post_events(
    client: Client, agent: Agent, events: list[Any], gzipped: bool = False
) -> tuple[int, Any]:
    """POST a batch as the agent does; the status and the decoded JSON answer."""
    body = orjson.dumps({"events": events})
    headers = {**agent.auth, "Content-Type": "application/json"}
    if gzipped:
        body = gzip.compress(body, 1)
        headers["Content-Encoding"] = "gzip"
    response = await client.post("/v1/events", data=body, headers=headers)
    return response.status, await response.json()


async def admin_get(client: Client, path: str) -> Any:
    """GET an admin endpoint with the admin token; asserts 200 and returns the JSON."""
    response = await client.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()
