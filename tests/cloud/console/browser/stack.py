"""The stack the browser looks at: the cloud on its own event loop thread, a real agent process."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.console.keys import CONSOLE_STORAGE, PASSWORDS
from cloud.console.settings import ConsoleSettings
from cloud.coupon_models import CampaignCreate
from cloud.coupons import create_campaign
from cloud.fleet import enroll_agent as fleet_enroll
from cloud.fleet import issue_enroll_code
from cloud.keys import COUPON_STORAGE, STORAGE
from cloud.storage.base import HeartbeatRecord, Storage
from hardware.emulators.scanner import PtyScanner
from protocol.ids import uuid7_str
from protocol.wire import AgentInfo, EnrollRequest, EnrollResponse

T = TypeVar("T")
STOREEDGE = [sys.executable, "-m", "agent.cli.main"]
STORE = "store-browser-01"
PASSWORD = "browser test password"
ROLES = ("admin", "engineer", "viewer")
ADMIN_TOKEN = "browser"
CAMPAIGN = "Autumn denim −20 %"
SETTINGS = ConsoleSettings(
    argon2_time_cost=1,
    argon2_memory_kib=1024,
    argon2_parallelism=1,
    evaluate_every_s=0.5,
    lease_ttl_s=3.0,
    live_poll_s=0.2,
)


@dataclass
class Neighbour:
    """A stand-in agent of another store, speaking the real ingest API over loopback."""

    store_id: str
    agent_id: str
    token: str
    seq: int = 0


class ConsoleStack:
    """Start with `with ConsoleStack(tmp) as stack:`; `url`, `scanner`, `agent`, `call()`.

    The cloud runs with its real coupon storage and one running campaign (`campaign_id`),
    which the agent learns from its business config like any store.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = CloudConfig(
            db_url=f"sqlite:///{tmp / 'cloud.db'}", admin_token=ADMIN_TOKEN, port=0,
            console=SETTINGS,
        )  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.scanner = PtyScanner(tmp / "scanner")
        self.agent: subprocess.Popen[bytes] | None = None
        self.neighbours: dict[str, Neighbour] = {}
        self.campaign_id = 0

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the cloud's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> "ConsoleStack":
        self._thread.start()
        self.url = self.call(self._start())
        for role in ROLES:
            self.call(self._add_user(role))
        code = self.call(issue_enroll_code(self._app[STORAGE], STORE)).code
        self.call(self._seed_neighbours())
        self.campaign_id = self.call(self._campaign())
        state = self.tmp / "state"
        enrolled = subprocess.run(
            [*STOREEDGE, "agent", "enroll", "--cloud", self.url, "--code", code,
             "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        config = self.tmp / "agent.toml"
        config.write_text(_agent_toml(state, self.url, self.scanner.link))
        with (self.tmp / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [*STOREEDGE, "agent", "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
            )  # fmt: skip
        # The scanner driver's first act is a durable device.status "connected" (seq 1).
        _wait(lambda: _captured(state / "outbox.db") > 0, 30, "the agent never opened the scanner")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.agent is not None:
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(20)
        self.scanner.close()
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> str:
        app = create_app(self.config)
        self._app = app
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def _seed_neighbours(self) -> None:
        # Other stores in other states, so the fleet page shows every lamp (heartbeats stored
        # with past receipt times: what the cloud would hold after they went quiet).
        storage = self._app[STORAGE]
        now = datetime.now(UTC)
        seeds = [
            ("store-0042", 40, 37, 900.0, [("printer-till", "printer", "degraded", "paper_out")]),
            ("store-0107", 150, 0, None, []),
            (
                "store-0310",
                3600,
                1200,
                4000.0,
                [("scanner-1", "scanner", "offline", "disconnected")],
            ),
        ]
        for store_id, silent_s, backlog, age, devices in seeds:
            code = (await issue_enroll_code(storage, store_id)).code
            identity = await enroll_agent(storage, code, now)
            self.neighbours[store_id] = Neighbour(store_id, identity.agent_id, identity.token)
            body = {
                "version": "0.1.0", "backlog_events": backlog, "dead_letters": 0,
                "devices": [{"device_id": d, "kind": k, "state": st, "condition": c}
                            for d, k, st, c in devices],
            }  # fmt: skip
            at = now - timedelta(seconds=silent_s)
            await storage.record_heartbeat(
                identity.agent_id, HeartbeatRecord(at, backlog, age, body)
            )
        await issue_enroll_code(storage, "store-0999")  # created, never enrolled

    async def _add_user(self, role: str) -> None:
        hashed = await self._app[PASSWORDS].async_hash(PASSWORD)
        await self._app[CONSOLE_STORAGE].add_user(role, hashed, role, datetime.now(UTC))  # type: ignore[arg-type]

    async def _campaign(self) -> int:
        now = datetime.now(UTC)
        body = CampaignCreate(name=CAMPAIGN, currency="EUR", max_offline_value=5000,
                              valid_from=now - timedelta(days=2),
                              valid_to=now + timedelta(days=12))  # fmt: skip
        return (await create_campaign(self._app[COUPON_STORAGE], body)).campaign_id

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the admin API with its bearer token; (status, JSON body)."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return self.call(self._request(method, path, body, headers))

    def ingest(self, store_id: str, kind: str, payload: dict[str, Any]) -> str:
        """One event from a neighbour's stand-in agent through POST /v1/events; its status."""
        who = self.neighbours[store_id]
        who.seq += 1
        event = {
            "event_id": uuid7_str(), "agent_id": who.agent_id, "store_id": store_id,
            "seq": who.seq, "device_id": "scanner-till", "kind": kind,
            "occurred_at": datetime.now(UTC).isoformat(), "schema": 1, "payload": payload,
        }  # fmt: skip
        headers = {"Authorization": f"Bearer {who.token}"}
        status, body = self.call(self._request("POST", "/v1/events", {"events": [event]}, headers))
        assert status == 200, body
        result: str = body["results"][0]["status"]
        return result

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()


async def enroll_agent(storage: Storage, code: str, now: datetime) -> EnrollResponse:
    """Enroll a stand-in agent directly through the fleet registry."""
    info = AgentInfo(hostname="box", version="0.1.0", platform="linux")
    return await fleet_enroll(storage, EnrollRequest(code=code, agent_info=info), now)


def _captured(outbox: Path) -> int:
    if not outbox.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) - 1 if row else 0


def _wait(predicate: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def _agent_toml(state: Path, url: str, link: Path) -> str:
    return f"""
[agent]
state_dir = "{state}"
log_level = "INFO"

[cloud]
url = "{url}"
heartbeat_interval_s = 0.5
backoff_base_s = 0.05
backoff_cap_s = 0.5

[coupons]
config_poll_interval_s = 1

[[devices]]
id = "scanner-front"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
"""
