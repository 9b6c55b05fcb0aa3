"""Remote config reaching a running agent (issue 7, "What must be shown"): a new version is
applied without touching unaffected devices (same tasks, same connections, same reader
thread); an invalid one is refused, the last good one kept, and the console data says why."""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    CouponSection,
    SerialScannerConfig,
    TcpPrinterConfig,
    TcpScannerConfig,
)
from agent.coupons.business import CONFIG_FILE
from agent.diagnostics.offline import render_status
from agent.runtime import AgentRuntime
from agent.snapshot import snapshot, status_line
from agent.sync.client import Credentials
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud
from hardware.emulators.lan_scanner import LanScannerServer
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

STORE = "store-rc"
ADMIN = "rc-admin-token"
DEVICES = ("scan-till", "scan-door", "till")


class Admin:
    """The admin API of a running cloud, as the console and scripts use it."""

    def __init__(self, cloud: RunningCloud) -> None:
        self.cloud = cloud

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.cloud.url + path, json=body, headers=headers) as r,
        ):
            return r.status, await r.json()

    async def set_store(self, document: dict[str, Any], comment: str) -> dict[str, Any]:
        body = {"document": document, "author": "ops@hq", "comment": comment}
        status, data = await self.call("PUT", f"/api/stores/{STORE}/config", body)
        assert status == 201, data
        return dict(data)

    async def console(self) -> dict[str, Any]:
        status, data = await self.call("GET", f"/api/stores/{STORE}")
        assert status == 200, data
        return dict(data)

    async def scans(self) -> dict[str, list[str]]:
        _, data = await self.call("GET", f"/api/events?store_id={STORE}&kind=scan&limit=1000")
        out: dict[str, list[str]] = {}
        for row in data["events"]:
            event = row["event"]
            out.setdefault(event["device_id"], []).append(event["payload"]["classification"])
        return out


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[RunningCloud]:
    config = CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    running = await start_cloud(config)
    try:
        yield running
    finally:
        await running.stop()


async def enroll(cloud: RunningCloud) -> Credentials:
    code = (await cloud.create_enroll_code(STORE)).code
    async with (
        aiohttp.ClientSession() as session,
        session.post(cloud.url + "/v1/enroll", json={"code": code}) as response,
    ):
        data = await response.json()
    return Credentials(cloud.url, data["agent_id"], data["store_id"], data["token"])


async def coupon(admin: Admin) -> str:
    now = datetime.now(UTC)
    status, campaign = await admin.call("POST", "/api/campaigns", {
        "name": "Spring", "currency": "CNY", "max_offline_value": 5000,
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_to": (now + timedelta(days=5)).isoformat(),
    })  # fmt: skip
    assert status == 201, campaign
    path = f"/api/campaigns/{campaign['campaign_id']}/coupons"
    status, issued = await admin.call("POST", path, {"count": 1, "value": 1500})
    assert status == 201, issued
    token: str = issued["coupons"][0]["token"]
    return token


def device_tasks() -> dict[str, asyncio.Task[Any]]:
    return {t.get_name(): t for t in asyncio.all_tasks() if t.get_name() in DEVICES}


def reader_thread() -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == "scanner:scan-till"]
    return thread


async def test_new_version_reaches_the_running_agent_and_a_bad_one_is_refused(
    tmp_path: Path, cloud: RunningCloud
) -> None:
    admin = Admin(cloud)
    token = await coupon(admin)
    credentials = await enroll(cloud)
    pty = PtyScanner(tmp_path / "till-scanner")
    door = LanScannerServer()
    await door.start()
    printer = PrinterEmulator()
    printer_port = await printer.start_tcp()
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=cloud.url, heartbeat_interval_s=0.3, backoff_cap_s=0.5),
        coupons=CouponSection(voucher_printer="till", config_poll_interval_s=1),
        devices=[
            SerialScannerConfig(id="scan-till", kind="scanner", transport="serial",
                                port=str(pty.link), idle_timeout_ms=0),
            TcpScannerConfig(id="scan-door", kind="scanner", transport="tcp",
                             host="127.0.0.1", port=door.port, idle_timeout_ms=0),
            TcpPrinterConfig(id="till", kind="printer", transport="tcp", host="127.0.0.1",
                             port=printer_port, poll_interval_s=0.2),
        ],
    )  # fmt: skip
    runtime = AgentRuntime(config, credentials)
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))

    async def agent_report() -> dict[str, Any] | None:
        reports = (await admin.console())["config"]["agents"]
        return dict(reports[0]) if reports else None

    async def ready() -> bool:
        states = {h.device_id: h.state for h in runtime.device_health()}
        report = await agent_report()
        return set(states.values()) == {"online"} and bool(report and report["in_sync"])

    try:
        await until(ready)
        assert runtime.coupons is not None
        applier = runtime.coupons.applier
        tasks, thread = device_tasks(), reader_thread()
        assert sorted(tasks) == sorted(DEVICES)
        links = (door.connections, printer.connections)
        assert links == (1, 1)

        # 1. A new version for the door scanner and the vouchers.
        good = await admin.set_store({
            "devices": {"scan-door": {"scan": {"staff_badge_patterns": ["^GUARD-[0-9]{3}$"]}}},
            "receipt": {"store_name": "Flagship Shanghai", "voucher_footer": ["Thank you!"]},
        }, "guards badge at the door")  # fmt: skip
        version = good["version"]["version"]

        async def applied(wanted: int) -> bool:
            report = await agent_report()
            return bool(report and report["applied_version"] == wanted and report["in_sync"])

        await until(lambda: applied(version))
        # Nothing was restarted: same tasks, same TCP links, same serial reader thread; only
        # the door scanner was handed new rules, in place.
        assert device_tasks() == tasks
        assert not any(task.done() for task in tasks.values())
        assert reader_thread() is thread
        assert (door.connections, printer.connections) == links
        assert dict(applier.handed) == {"scan-door": 1}
        assert [h.counters["reconnects"] for h in runtime.device_health()[:3]] == [0, 0, 0]

        # The new rules route at the door only; the voucher carries the new receipt text.
        await door.scan("GUARD-123")
        await asyncio.to_thread(pty.scan, "GUARD-123")
        await asyncio.to_thread(pty.scan, token)

        async def routed() -> bool:
            scans = await admin.scans()
            return len(scans.get("scan-door", [])) == 1 and len(scans.get("scan-till", [])) == 2

        await until(routed)
        scans = await admin.scans()
        assert scans["scan-door"] == ["staff_badge"]
        assert scans["scan-till"] == ["unrecognised", "coupon"]
        await until(lambda: asyncio.sleep(0, bool(printer.receipts)))
        voucher = printer.receipts[-1].lines
        assert "Flagship Shanghai" in voucher
        assert "Thank you!" in voucher

        # 2. A version naming a device this box does not have: refused, last good kept.
        saved = (tmp_path / "state" / CONFIG_FILE).read_bytes()
        bad = await admin.set_store({"devices": {"scanner-9": {}}}, "wrong store")
        assert bad["warnings"]  # the cloud warns; the agent decides

        async def refusing() -> bool:
            report = await agent_report()
            return bool(report and report["refusing"])

        await until(refusing)
        console = await admin.console()
        report = console["config"]["agents"][0]
        assert report["applied_version"] == version
        assert report["in_sync"] is False
        refusal = report["last_refusal"]
        assert refusal["settings_version"] == bad["version"]["version"]
        assert refusal["config_hash"] == console["config"]["config_hash"]
        assert refusal["reason"].startswith("devices.scanner-9: no such device on this box")
        heartbeat = console["agents"][0]["heartbeat"]
        assert heartbeat["config_version"] == version
        assert heartbeat["config_error"]["reason"] == refusal["reason"]
        assert (tmp_path / "state" / CONFIG_FILE).read_bytes() == saved
        # The field engineer sees it too: `agent status`, the status page, systemd STATUS=.
        doc = await snapshot(runtime)
        assert doc["business_config"]["settings_version"] == version
        assert doc["business_config"]["refused"]["reason"] == refusal["reason"]
        assert f"CONFIG     refused v{bad['version']['version']}: devices." in render_status(doc)
        assert "business config refused" in status_line(doc)
        await door.scan("GUARD-456")  # still routed by the last good rules

        async def routed_again() -> bool:
            return len((await admin.scans()).get("scan-door", [])) == 2

        await until(routed_again)
        assert (await admin.scans())["scan-door"] == ["staff_badge", "staff_badge"]
        assert dict(applier.handed) == {"scan-door": 1}
        polls = cloud.counters.events["config_sent"]
        await asyncio.sleep(2.5)  # two more polls: answered 304, the refused one not resent
        assert cloud.counters.events["config_sent"] == polls

        # 3. Fixed by head office: applied, and the console still shows the last refusal.
        fixed = await admin.set_store({
            "devices": {"scan-door": {"scan": {"staff_badge_patterns": ["^GUARD-[0-9]{4}$"]}}},
            "receipt": {"store_name": "Flagship Shanghai", "voucher_footer": ["Thank you!"]},
        }, "four-digit guard badges")  # fmt: skip
        await until(lambda: applied(fixed["version"]["version"]))
        report = (await agent_report()) or {}
        assert report["refusing"] is False
        assert report["last_refusal"]["settings_version"] == bad["version"]["version"]
        assert device_tasks() == tasks
        assert (door.connections, printer.connections) == links
        assert dict(applier.handed) == {"scan-door": 2}
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
        await door.close()
        await printer.close()
        pty.close()
    assert agent.exception() is None
    saved_config = orjson.loads((tmp_path / "state" / CONFIG_FILE).read_bytes().partition(b"\n")[2])
    assert saved_config["settings_version"] == fixed["version"]["version"]
