"""Helpers of the console tests: a signed-in client, agents that heartbeat and send events."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from cloud.console.keys import CONSOLE_STORAGE, EVALUATOR, PASSWORDS
from cloud.console.settings import ConsoleSettings
from cloud.fleet import issue_enroll_code
from cloud.keys import STORAGE
from protocol.ids import uuid7_str

Client = TestClient[web.Request, web.Application]
PASSWORD = "a long enough password"
# Cheap Argon2id for tests (the production cost is pinned in test_passwords); the evaluator
# and poller are driven by hand or run fast.
FAST = ConsoleSettings(
    argon2_time_cost=1,
    argon2_memory_kib=1024,
    argon2_parallelism=1,
    evaluate_every_s=3600.0,
    lease_ttl_s=7200.0,
    live_poll_s=0.05,
)


async def add_user(client: Client, username: str, role: str, password: str = PASSWORD) -> None:
    """Create an account through the running app's storage."""
    hashed = await client.app[PASSWORDS].async_hash(password)
    await client.app[CONSOLE_STORAGE].add_user(username, hashed, role, datetime.now(UTC))  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    """The CSRF token a page embeds in its forms."""
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def login(client: Client, username: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; returns the fleet page's CSRF token."""
    form = await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={"username": username, "password": password, "_csrf": csrf_of(await form.text())},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    page = await client.get("/console/")
    assert page.status == 200
    return csrf_of(await page.text())


@dataclass
class FakeAgent:
    """An enrolled agent speaking the ingest API from the test."""

    client: Client
    agent_id: str
    store_id: str
    token: str
    seq: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def heartbeat(self, devices: list[dict[str, Any]] | None = None, **fields: Any) -> None:
        body = {
            "sent_at": datetime.now(UTC).isoformat(),
            "version": "0.1.0",
            "backlog_events": 0,
            "backlog_bytes": 0,
            "devices": devices or [],
            **fields,
        }
        response = await self.client.post("/v1/heartbeat", json=body, headers=self.auth)
        assert response.status == 200, await response.text()

    async def send(self, *payloads: tuple[str, str, dict[str, Any]]) -> None:
        """Send (device_id, kind, payload) events in one batch."""
        events = []
        for device_id, kind, payload in payloads:
            self.seq += 1
            events.append({
                "event_id": uuid7_str(), "agent_id": self.agent_id, "store_id": self.store_id,
                "seq": self.seq, "device_id": device_id, "kind": kind,
                "occurred_at": datetime.now(UTC).isoformat(), "schema": 1, "payload": payload,
            })  # fmt: skip
        response = await self.client.post("/v1/events", json={"events": events}, headers=self.auth)
        results = (await response.json())["results"]
        assert all(r["status"] == "accepted" for r in results), results

    async def scans(self, device_id: str, recognised: int, unrecognised: int) -> None:
        good = {"raw_b64": "NDAxMjM0NTY3ODkwMQ==", "text": "4012345678901",
                "classification": "product", "symbology": "EAN-13"}  # fmt: skip
        bad = {"raw_b64": "eHg=", "text": "xx", "classification": "unrecognised",
               "reason": "not a GTIN"}  # fmt: skip
        await self.send(*[(device_id, "scan", good)] * recognised,
                        *[(device_id, "scan", bad)] * unrecognised)  # fmt: skip


async def enroll_agent(client: Client, store_id: str) -> FakeAgent:
    """A store with one enrolled agent."""
    issued = await issue_enroll_code(client.app[STORAGE], store_id)
    response = await client.post("/v1/enroll", json={"code": issued.code})
    data = await response.json()
    return FakeAgent(client, data["agent_id"], data["store_id"], data["token"])


async def tick(client: Client, now: datetime | None = None) -> Any:
    """One evaluator round of the running app."""
    return await client.app[EVALUATOR].tick(now)


SCANNER_ONLINE = {"device_id": "scanner-front", "kind": "scanner", "state": "online",
                  "condition": "connected"}  # fmt: skip
SCANNER_OFFLINE = {**SCANNER_ONLINE, "state": "offline", "condition": "disconnected"}
PRINTER_PAPER_OUT = {"device_id": "printer-till", "kind": "printer", "state": "degraded",
                     "condition": "paper_out"}  # fmt: skip
