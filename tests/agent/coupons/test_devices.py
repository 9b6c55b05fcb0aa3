"""Coupons through the real devices: a pty scanner and a mirror's claim reach the coupon flow,
a staff badge attributes, and the till printer (emulator) prints the voucher."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coupon_helpers import Cloud, running_cloud

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    CouponSection,
    MirrorConfig,
    SerialScannerConfig,
    TcpPrinterConfig,
)
from agent.coupons.voucher import VOUCHER_QR_PREFIX
from agent.runtime import AgentRuntime
from hardware.emulators.mirror import MirrorEmulator
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

STORE = "store-dev"


async def _until(predicate: Callable[[], Any], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_scanner_mirror_badge_and_voucher(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        await _run(cloud, tmp_path)


async def _run(cloud: Cloud, tmp_path: Path) -> None:
    campaign = await cloud.campaign()
    scanned, claimed, ignored = await cloud.issue(campaign, count=3, value=2500)
    credentials = await cloud.enroll(STORE)
    scanner = PtyScanner(tmp_path / "scanner")
    printer = PrinterEmulator()
    printer_port = await printer.start_tcp()
    mirror = MirrorEmulator("mx-1", mdns=False)
    await mirror.start()
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=cloud.url, heartbeat_interval_s=0.2, backoff_cap_s=0.5),
        coupons=CouponSection(voucher_printer="till"),
        devices=[
            SerialScannerConfig(id="scanner-1", kind="scanner", transport="serial",
                                port=str(scanner.link), idle_timeout_ms=0),
            TcpPrinterConfig(id="till", kind="printer", transport="tcp", host="127.0.0.1",
                             port=printer_port, poll_interval_s=0.2),
            MirrorConfig(id="mirror-1", kind="mirror", transport="http", mirror_id="mx-1",
                         host="127.0.0.1", port=mirror.port),
        ],
    )  # fmt: skip
    runtime = AgentRuntime(config, credentials)
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))

    async def count(kind: str) -> int:
        _, data = await cloud.admin("GET", f"/api/events/count?store_id={STORE}&kind={kind}")
        return int(data["count"])

    async def ready() -> bool:
        coupons = runtime.coupons
        states = {h.device_id: h.state for h in runtime.device_health()}
        return (
            coupons is not None
            and coupons.store.active is not None
            and (set(states.values()) == {"online"})
        )

    try:
        await _until(ready)
        await asyncio.to_thread(scanner.scan, "STAFF-0042")
        await asyncio.to_thread(scanner.scan, scanned)
        await asyncio.to_thread(scanner.scan, scanned)  # the same coupon again
        session = mirror.session_start()
        mirror.coupon_claim(session.session_id, claimed)

        async def arrived() -> bool:
            return (await count("coupon.redeemed"), await count("coupon.rejected")) == (2, 1)

        await _until(arrived)

        async def printed() -> bool:
            return len(printer.receipts) >= 2

        await _until(printed)
        _, events = await cloud.admin("GET", f"/api/events?store_id={STORE}&kind=coupon.redeemed")
        payloads = {e["event"]["device_id"]: e["event"]["payload"] for e in events["events"]}
        assert payloads["scanner-1"]["channel"] == "scanner"
        assert payloads["scanner-1"]["staff_id"] == "STAFF-0042"
        assert payloads["mirror-1"]["channel"] == "mirror"
        assert payloads["mirror-1"]["staff_id"] is None
        redemptions = {p["redemption_id"] for p in payloads.values()}
        qr = {r.qr_codes[0].data.decode() for r in printer.receipts}
        assert qr == {VOUCHER_QR_PREFIX + rid for rid in redemptions}
        text = "\n".join(printer.receipts[0].lines)
        assert "25.00 CNY" in text
        assert await count("staff.login") == 1
        _, stats = await cloud.admin("GET", f"/api/campaigns/{campaign}/stats")
        assert stats["redemptions"] == 2
        assert stats["rejected"] == {"already_redeemed_here": 1}
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
        await mirror.close()
        await printer.close()
        scanner.close()
    assert agent.exception() is None
    del ignored
