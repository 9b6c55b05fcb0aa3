"""The local status page over real loopback HTTP, against a running agent and emulators.

Loopback callers see it freely; a request naming another host (the LAN, or a DNS-rebinding
page) needs the token; actions need the CSRF header; nothing comes from the internet; the
token never reaches a log line. The LAN itself is tested from a second network namespace in
test_status_page_lan.py.
"""

import asyncio
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from field_helpers import fake_credentials, until

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    SerialScannerConfig,
    StatusPageSection,
    TcpPrinterConfig,
)
from agent.runtime import AgentRuntime
from agent.status_page.access import host_name, is_local, is_loopback_address
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

NOWHERE = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("peer", "host", "local"),
    [
        ("127.0.0.1", "127.0.0.1:8421", True),
        ("::1", "[::1]:8421", True),
        ("127.0.0.1", "localhost:8421", True),
        ("::ffff:127.0.0.1", "127.0.0.1:8421", True),
        ("127.0.0.1", "evil.example:8421", False),  # DNS rebinding
        ("127.0.0.1", "192.168.10.5:8421", False),  # loopback peer, LAN name (a proxy)
        ("192.168.10.23", "192.168.10.5:8421", False),  # a phone on the store Wi-Fi
        ("192.168.10.23", "127.0.0.1:8421", False),  # a forged Host from the LAN
        (None, "127.0.0.1", False),  # a Unix socket: not trusted
    ],
)
def test_only_loopback_to_a_loopback_name_is_local(
    peer: str | None, host: str, local: bool
) -> None:
    assert is_local(peer, host) is local


def test_address_helpers() -> None:
    assert host_name("[::1]:80") == "::1"
    assert host_name("Box.Local:8421") == "box.local"
    assert is_loopback_address("127.8.9.10")
    assert not is_loopback_address("garbage")


@pytest.fixture
async def agent_with_devices(tmp_path: Path):  # type: ignore[no-untyped-def]
    scanner = PtyScanner(tmp_path / "scanner")
    printer = PrinterEmulator()
    printer_port = await printer.start_tcp()
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=NOWHERE, backoff_cap_s=0.5),
        status_page=StatusPageSection(port=0),
        devices=[
            SerialScannerConfig(
                id="scanner-1", kind="scanner", transport="serial", port=str(scanner.link)
            ),
            TcpPrinterConfig(
                id="printer-1",
                kind="printer",
                transport="tcp",
                host="127.0.0.1",
                port=printer_port,
                poll_interval_s=0.2,
            ),
        ],
    )
    runtime = AgentRuntime(config, fake_credentials(tmp_path / "state", NOWHERE))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await runtime.started.wait()
    await until(lambda: {d.health().state for d in runtime.drivers} == {"online"}, 10)
    try:
        yield runtime, scanner, printer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await printer.close()
        scanner.close()


async def test_page_shows_devices_and_decoded_scans_and_runs_both_tests(
    agent_with_devices: tuple[AgentRuntime, PtyScanner, PrinterEmulator],
) -> None:
    runtime, scanner, printer = agent_with_devices
    assert runtime.status_page_url is not None
    base = runtime.status_page_url.rstrip("/")
    action = {"X-Storeedge-Action": "1"}
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/") as page:
            assert page.status == 200
            html = await page.text()
            assert 'name="viewport"' in html  # laid out for a phone
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]

        # Test scan: the request waits; the engineer scans a GS1 code; the page shows it.
        waiting = asyncio.ensure_future(
            http.post(base + "/api/devices/scanner-1/test-scan?timeout=10", headers=action)
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(scanner.scan, "]C1010400638133393110ABC123")
        async with await waiting as answer:
            assert answer.status == 200
            scan = await answer.json()
        assert scan["symbology"]
        assert scan["gs1"]["01"] == "04006381333931"
        assert scan["classification"] == "product"

        async with http.get(base + "/api/status") as response:
            doc = await response.json()
        assert {d["device_id"]: d["state"] for d in doc["devices"]} == {
            "scanner-1": "online",
            "printer-1": "online",
            # No business config has reached this agent (its cloud is nowhere): no coupons yet.
            "coupons": "offline",
        }
        assert doc["scans"][0]["gs1"]["10"] == "ABC123"
        assert doc["outbox"]["backlog_events"] >= 1  # the cloud is away: buffered

        # Test print: confirmed by the printer, and the emulator really printed it.
        async with http.post(base + "/api/devices/printer-1/test-print", headers=action) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["status"] == "completed"
        assert any("storeedge test page" in line for line in printer.receipts[-1].lines)

        # Wrong kinds and unknown devices are clear errors, not crashes.
        async with http.post(base + "/api/devices/printer-1/test-scan", headers=action) as r:
            assert r.status == 404
            assert "not a scanner" in (await r.json())["error"]
        async with http.post(base + "/api/devices/nope/test-print", headers=action) as r:
            assert r.status == 404
        async with http.post(
            base + "/api/devices/scanner-1/test-scan?timeout=0.2", headers=action
        ) as r:
            assert r.status == 504
        async with http.post(
            base + "/api/devices/scanner-1/test-scan?timeout=nan", headers=action
        ) as r:
            assert r.status == 400
        # Without the action header a cross-site form could print: refused.
        async with http.post(base + "/api/devices/printer-1/test-print") as r:
            assert r.status == 403


async def test_a_foreign_host_name_needs_the_token_even_on_loopback(tmp_path: Path) -> None:
    """DNS rebinding: loopback peer, foreign Host header → treated as the LAN."""
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state"),
        cloud=CloudSection(url=NOWHERE),
        status_page=StatusPageSection(port=0),
    )
    runtime = AgentRuntime(config, fake_credentials(tmp_path / "state", NOWHERE))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await runtime.started.wait()
    try:
        assert runtime.status_page_url is not None
        url = runtime.status_page_url + "api/status"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers={"Host": "evil.example"}) as r:
                assert r.status == 403  # LAN access is off: loopback only
            async with http.get(url) as r:
                assert r.status == 200
                assert (await r.json())["status_page"]["refused"] == {"lan_disabled": 1}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_the_page_loads_nothing_from_the_internet() -> None:
    static = Path(__file__).parents[3] / "agent" / "status_page" / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
    # Scan text is a barcode's: it is only ever assigned as text, never parsed as HTML.
    script = (static / "app.js").read_text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script


async def test_the_lan_token_never_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web

    from agent.status_page.server import AccessLogger, create_app

    class Source:
        async def snapshot(self) -> dict[str, object]:
            return {"ok": True}

        async def test_print(self, device_id: str) -> dict[str, object]:
            raise NotImplementedError

        async def test_scan(self, device_id: str, timeout_s: float) -> dict[str, object]:
            raise NotImplementedError

    token = "lan-secret-token-" + "z" * 20
    runner = web.AppRunner(
        create_app(Source(), token),
        access_log_class=AccessLogger,
        access_log=logging.getLogger("agent.status_page.access"),
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.DEBUG)
    try:
        async with aiohttp.ClientSession() as http:
            lan = {"Host": "192.168.10.5:8421"}
            async with http.get(f"http://127.0.0.1:{port}/api/status", headers=lan) as r:
                assert r.status == 401
            async with http.get(
                f"http://127.0.0.1:{port}/api/status?token=wrong", headers=lan
            ) as r:
                assert r.status == 401
            async with http.get(
                f"http://127.0.0.1:{port}/?token={token}", headers=lan, allow_redirects=False
            ) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/"
                assert "HttpOnly" in r.headers["Set-Cookie"]
            cookie = {"Cookie": f"storeedge_token={token}"}
            async with http.get(
                f"http://127.0.0.1:{port}/api/status", headers={**lan, **cookie}
            ) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    assert any("/api/status" in rec.getMessage() for rec in caplog.records)
    assert token not in caplog.text
