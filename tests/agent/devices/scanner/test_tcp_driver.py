"""The real TcpScanner against the LanScannerServer emulator over real TCP on 127.0.0.1."""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from scanner_helpers import RecordingSink, running

from agent.config import ScanSection, TcpScannerConfig, parse_config
from agent.devices.base import Payload
from agent.devices.registry import DeviceContext, build_driver
from agent.devices.scanner import reporter, tcp_driver
from agent.devices.scanner.tcp_driver import TcpScanner, set_keepalive
from agent.errors import OutboxClosed
from hardware.emulators.lan_scanner import LanScannerServer
from protocol.events import ScanPayload

EAN = b"]E04006381333931"
GS1 = b"]C101095011015300031725010110ABC123\x1d21XYZ"
COUPON = b"]Q1SE1.eyJjIjoiMSJ9.c2ln"
BADGE = b"]C0STAFF-004711"


@pytest.fixture(autouse=True)
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_driver, "RECONNECT_INITIAL_S", 0.01)
    monkeypatch.setattr(tcp_driver, "RECONNECT_MAX_S", 0.05)


@pytest.fixture
async def server() -> AsyncIterator[LanScannerServer]:
    async with LanScannerServer() as emulator:
        yield emulator


def make_config(port: int, **overrides: Any) -> TcpScannerConfig:
    fields: dict[str, Any] = {
        "id": "scanner-lan",
        "kind": "scanner",
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port,
    }
    return TcpScannerConfig(**(fields | overrides))


async def test_scans_arrive_in_order_decoded_and_routed(server: LanScannerServer) -> None:
    sink = RecordingSink()
    async with running(TcpScanner(make_config(server.port), sink)):
        await sink.connected()
        for scan in (EAN, GS1, COUPON, BADGE):
            await server.scan(scan)
        await sink.wait_for(lambda: len(sink.scans()) == 4)
    scans = sink.scans()
    assert [s.classification for s in scans] == ["product", "product", "coupon", "staff_badge"]
    assert scans[1].gs1 == {"01": "09501101530003", "17": "250101", "10": "ABC123", "21": "XYZ"}
    assert [s.raw for s in scans] == [EAN, GS1, COUPON, BADGE]
    assert sink.statuses() == [("online", "connected")]


async def test_one_segment_per_byte_still_makes_one_frame(server: LanScannerServer) -> None:
    sink = RecordingSink()
    async with running(TcpScanner(make_config(server.port), sink)):
        await sink.connected()
        await server.wait_for_clients()
        await server.scan(GS1, per_byte=True)
        await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert sink.scans()[0].raw == GS1


async def test_merged_scans_are_split_and_each_is_durable_before_the_next(
    server: LanScannerServer,
) -> None:
    sink = RecordingSink(delay_s=0.01)  # a slow outbox: captures must still never overlap
    codes = [b"]E0" + bytes(str(4006381333931), "ascii"), b"]E496385074", GS1, COUPON, BADGE]
    driver = TcpScanner(make_config(server.port), sink)
    async with running(driver):
        await sink.connected()
        await server.wait_for_clients()
        await server.merged(codes)
        await sink.wait_for(lambda: len(sink.scans()) == 5)
        health = driver.health()
    assert [s.raw for s in sink.scans()] == codes
    assert sink.max_in_flight == 1
    assert health.counters["frames"] == 5
    assert health.counters["bytes"] == sum(len(c) + 2 for c in codes)


async def test_a_reset_is_reported_and_the_driver_reconnects(server: LanScannerServer) -> None:
    sink = RecordingSink()
    driver = TcpScanner(make_config(server.port, idle_timeout_ms=0), sink)
    async with running(driver):
        await sink.connected()
        await server.wait_for_clients()
        await server.send_raw(b"40063")  # a scan cut short by the reset
        await asyncio.sleep(0.05)
        await server.reset_clients()
        await sink.connected(2)
        await server.wait_for_clients()
        await server.scan(EAN)
        await sink.wait_for(lambda: EAN in [s.raw for s in sink.scans()])
        health = driver.health()
    assert sink.statuses() == [
        ("online", "connected"), ("offline", "disconnected"), ("online", "connected"),
    ]  # fmt: skip
    detail = sink.status_payloads()[1].detail or ""
    assert "reset" in detail.lower()
    assert sink.texts() == ["40063", "4006381333931"]  # what was read is kept, then the rest
    assert health.counters["reconnects"] == 1


async def test_a_link_that_held_is_redialled_quietly_when_the_server_drops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp_driver, "RECONNECT_STABLE_S", 0.05)
    sink = RecordingSink()
    async with LanScannerServer(idle_close_s=0.2) as server:  # Moxa's alive check, shortened
        driver = TcpScanner(make_config(server.port), sink)
        async with running(driver):
            await sink.connected()
            await sink.wait_for(lambda: server.connections >= 2)
            await server.wait_for_clients()
            await server.scan(EAN)
            await sink.wait_for(lambda: len(sink.scans()) == 1)
            health = driver.health()
    assert sink.statuses() == [("online", "connected")]  # no status pair per idle spell
    assert health.counters["reconnects"] >= 1


async def test_a_silent_half_open_link_trips_the_read_watchdog(server: LanScannerServer) -> None:
    sink = RecordingSink()
    driver = TcpScanner(make_config(server.port, read_idle_timeout_s=0.3), sink)
    async with running(driver):
        await sink.connected()
        await server.wait_for_clients()
        server.go_silent()  # the link stays open, nothing more comes through it
        await server.scan(EAN)  # lost on the dead link
        await sink.connected(2)
        await server.wait_for_clients()
        await server.scan(GS1)
        await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert sink.scans()[0].raw == GS1
    assert sink.status_payloads()[1].detail == "no data for 0.3 s: assuming a half-open link"
    assert server.connections == 2


async def test_no_server_is_one_disconnected_then_connected_when_it_appears() -> None:
    with socket.socket() as probe:  # a free port, closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = RecordingSink()
    async with running(TcpScanner(make_config(port), sink)):
        await sink.wait_for(lambda: sink.statuses() == [("offline", "disconnected")])
        await asyncio.sleep(0.1)  # several failed dials: still one event
        assert sink.statuses() == [("offline", "disconnected")]
        async with LanScannerServer(port=port) as server:
            await sink.connected()
            await server.wait_for_clients()
            await server.scan(EAN)
            await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert "refused" in (sink.status_payloads()[0].detail or "").lower()


async def test_a_flood_is_dropped_counted_and_ends(
    server: LanScannerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter, "FLOOD_CALM_S", 0.2)
    sink = RecordingSink()
    driver = TcpScanner(make_config(server.port, flood_max_per_s=1, flood_burst=5), sink)
    async with running(driver):
        await sink.connected()
        await server.wait_for_clients()
        await server.merged([EAN] * 50)
        await sink.wait_for(lambda: ("online", "flood_ended") in sink.statuses())
        health = driver.health()
    assert sink.statuses() == [
        ("online", "connected"), ("degraded", "flooding"), ("online", "flood_ended"),
    ]  # fmt: skip
    assert len(sink.scans()) == 5
    assert sink.losses == {"flood": 45}
    assert health.counters["flood_dropped"] == 45


async def test_a_failing_outbox_stops_the_driver_with_its_error(server: LanScannerServer) -> None:
    class ClosedOutbox(RecordingSink):
        async def capture(
            self, device_id: str, payload: Payload, occurred_at: Any = None, **_: Any
        ) -> None:
            if isinstance(payload, ScanPayload):
                raise OutboxClosed("outbox is closed")
            await super().capture(device_id, payload, occurred_at)

    sink = ClosedOutbox()
    task = asyncio.create_task(TcpScanner(make_config(server.port), sink).run())
    await sink.connected()
    await server.wait_for_clients()
    await server.scan(EAN)
    with pytest.raises(OutboxClosed):
        async with asyncio.timeout(2.0):
            await task
    await asyncio.sleep(0.05)
    assert server.clients == 0  # the link was closed on the way out


def test_keepalive_is_configured_on_the_socket() -> None:
    with socket.socket() as sock:
        set_keepalive(sock, 30, 10, 3)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3


def test_agent_toml_declares_lan_scanners_and_the_scan_section() -> None:
    config = parse_config(
        """
        [cloud]
        url = "https://ingest.example.com"
        [scan]
        coupon_prefixes = ["SE1.", "PROMO-"]
        [[devices]]
        id = "scanner-door"
        kind = "scanner"
        transport = "tcp"
        host = "192.168.10.60"
        read_idle_timeout_s = 600
        """
    )
    device = config.devices[0]
    assert isinstance(device, TcpScannerConfig)
    assert (device.port, device.keepalive, device.read_idle_timeout_s) == (4001, True, 600)
    assert config.scan.coupon_prefixes == ["SE1.", "PROMO-"]
    driver = build_driver(device, RecordingSink(), DeviceContext(scan=config.scan))
    assert isinstance(driver, TcpScanner)
    assert driver._reporter._scan is config.scan


def test_a_bad_staff_badge_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="staff_badge_pattern"):
        ScanSection(staff_badge_pattern="STAFF-[")
