"""The whole agent process in one loop: every device kind, the cloud, heartbeats, faults.

Real emulators (pty scanner, TCP printer, HTTP/WebSocket mirror) and the real cloud on
loopback. One device failing must not disturb the others, and heartbeats must say who is down.
"""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    MirrorConfig,
    SerialScannerConfig,
    TcpPrinterConfig,
)
from agent.credentials import enroll
from agent.devices.printer.driver import EscPosPrinter
from agent.runtime import AgentRuntime
from cloud.config import CloudConfig
from cloud.service import start_cloud
from hardware.emulators.mirror import MirrorEmulator
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

ADMIN = "runtime-admin"
STORE = "store-rt"


async def _until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)
    del what


async def test_every_device_reaches_the_cloud_and_one_failing_disturbs_no_other(
    tmp_path: Path,
) -> None:
    cloud = await start_cloud(
        CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    )
    credentials = await enroll(cloud.url, (await cloud.create_enroll_code(STORE)).code)
    scanner = PtyScanner(tmp_path / "scanner")
    printer = PrinterEmulator()
    printer_port = await printer.start_tcp()
    mirror = MirrorEmulator("mx-1", mdns=False)
    await mirror.start()
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=cloud.url, heartbeat_interval_s=0.2, backoff_cap_s=0.5),
        devices=[
            SerialScannerConfig(id="scanner-1", kind="scanner", transport="serial",
                                port=str(scanner.link)),
            TcpPrinterConfig(id="printer-1", kind="printer", transport="tcp",
                             host="127.0.0.1", port=printer_port, poll_interval_s=0.2),
            MirrorConfig(id="mirror-1", kind="mirror", transport="http", mirror_id="mx-1",
                         host="127.0.0.1", port=mirror.port),
        ],
    )  # fmt: skip
    runtime = AgentRuntime(config, credentials)
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})

    async def count(kind: str) -> int:
        url = f"{cloud.url}/api/events/count?store_id={STORE}&kind={kind}"
        async with session.get(url) as response:
            return int((await response.json())["count"])

    async def heartbeat_devices() -> dict[str, str]:
        async with session.get(f"{cloud.url}/api/stores/{STORE}") as response:
            body = await response.json()
        beat = body["agents"][0]["heartbeat"] or {}
        return {d["device_id"]: d["state"] for d in beat.get("devices", [])}

    def states() -> dict[str, str]:
        return {h.device_id: h.state for h in runtime.device_health()}

    async def all_online() -> bool:
        return set(states().values()) == {"online"}

    try:
        await runtime.started.wait()
        await _until(all_online, 15, "every device online")
        await asyncio.to_thread(scanner.scan, "]E04006381333931")
        (printing,) = [d for d in runtime.drivers if isinstance(d, EscPosPrinter)]
        receipt = {"store_name": "RT", "receipt_no": "R1",
                   "items": [{"name": "Shirt", "unit_price_cents": 1990}]}  # fmt: skip
        await printing.submit_template("job-1", "receipt", receipt)
        shopper = mirror.session_start()

        async def all_kinds_arrived() -> bool:
            kinds = ("scan", "print.completed", "mirror.session")
            return all([await count(kind) >= 1 for kind in kinds])

        await _until(all_kinds_arrived, 15, "scan, print and mirror events in the cloud")
        assert printer.receipts[0].lines[0].strip() == "RT"

        # The scanner is unplugged and the printer loses power: the mirror carries on.
        scanner.unplug()
        await printer.power_off()
        mirror.tryon(shopper.session_id, barcode="4006381333931")

        async def tryon_arrived() -> bool:
            return await count("mirror.tryon") == 1

        await _until(tryon_arrived, 15, "the mirror's try-on despite the other faults")

        async def faults_in_heartbeat() -> bool:
            # The coupon service reports beside the devices: its config is current.
            return await heartbeat_devices() == {
                "scanner-1": "offline", "printer-1": "offline", "mirror-1": "online",
                "coupons": "online",
            }  # fmt: skip

        await _until(faults_in_heartbeat, 15, "heartbeat naming the two failed devices")

        # Back again: both recover on their own, with no restart of the agent.
        scanner.replug()
        await printer.power_on()
        await _until(all_online, 15, "every device online again")
        await asyncio.to_thread(scanner.scan, "]E04006381333931")

        async def second_scan() -> bool:
            return await count("scan") == 2

        await _until(second_scan, 15, "a scan after the replug")
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
        await session.close()
        await mirror.close()
        await printer.close()
        scanner.close()
        await cloud.stop()
    assert agent.exception() is None


async def test_discovery_auto_attaches_announced_mirrors_and_reports_them(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import secrets

    import zeroconf._core

    from agent.config import DiscoverySection

    # Announce in milliseconds, not ~1.2 s (as mirror/mdns_loopback.quick_mdns_timing does).
    for name in ("_CHECK_TIME", "_REGISTER_TIME", "_UNREGISTER_TIME"):
        monkeypatch.setattr(zeroconf._core, name, 10)
    cloud = await start_cloud(
        CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    )
    credentials = await enroll(cloud.url, (await cloud.create_enroll_code(STORE)).code)
    # The real service type, so ids unique to this run keep other runs' mirrors out.
    tag = secrets.token_hex(3)
    ids = [f"RT{tag}-{n}" for n in (1, 2)]
    mirrors = [MirrorEmulator(mirror_id) for mirror_id in ids]
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=cloud.url, heartbeat_interval_s=0.2, backoff_cap_s=0.5),
        discovery=DiscoverySection(mirrors="auto", mirror_ids=[f"RT{tag}-*"],
                                   interfaces=["127.0.0.1"]),
    )  # fmt: skip
    runtime = AgentRuntime(config, credentials)
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})

    async def heartbeat_devices() -> dict[str, str]:
        async with session.get(f"{cloud.url}/api/stores/{STORE}") as response:
            body = await response.json()
        beat = body["agents"][0]["heartbeat"] or {}
        # The coupon service reports beside the devices; this test is about the mirrors.
        devices = [d for d in beat.get("devices", []) if d["kind"] != "coupons"]
        return {d["device_id"]: d["state"] for d in devices}

    async def both_in_heartbeat() -> bool:
        return await heartbeat_devices() == {f"mirror-{i}": "online" for i in ids}

    try:
        await runtime.started.wait()
        for mirror in mirrors:
            await mirror.start()
        await _until(both_in_heartbeat, 15, "both mirrors attached, online, in heartbeats")
    finally:
        stop.set()
        await agent
        await session.close()
        for mirror in mirrors:
            await mirror.close()
        await cloud.stop()
    assert runtime.mirror_discovery is not None
    assert runtime.mirror_discovery.counters["attached"] == 2
    assert {driver.health().condition for driver in runtime.drivers} == {"stopped"}
