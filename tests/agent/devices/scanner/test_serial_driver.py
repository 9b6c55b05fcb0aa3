"""The real SerialScanner against the real PtyScanner emulator over a real pty."""

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import serial

from agent.config import SerialScannerConfig
from agent.devices.base import Payload
from agent.devices.scanner import reporter, serial_driver
from agent.devices.scanner.serial_driver import SerialScanner, reconnect_delay
from agent.errors import OutboxClosed
from agent.outbox import Identity, Outbox
from hardware.emulators.scanner import PtyScanner, realistic_scans
from protocol import EVENT_ADAPTER
from protocol.events import DeviceStatusPayload, ScanPayload

DEVICE = "scanner-front"
EAN = b"]E04006381333931"
GS1 = b"]C101095011015300031725010110ABC123\x1d21XYZ"
QR = b"]Q1https://shop.example.com/c/ABCD2345"


class RecordingSink:
    """In-memory EventSink that records what was captured and how many captures overlapped."""

    def __init__(self, delay_s: float = 0.0, fail_scans: bool = False) -> None:
        self.events: list[tuple[str, Payload, datetime | None]] = []
        self.delay_s = delay_s
        self.fail_scans = fail_scans
        self.in_flight = 0
        self.max_in_flight = 0
        self.losses: dict[str, int] = {}

    async def count_loss(self, reason: str, count: int = 1) -> None:
        self.losses[reason] = self.losses.get(reason, 0) + count

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail_scans and isinstance(payload, ScanPayload):
                raise OutboxClosed("outbox is closed")
            self.events.append((device_id, payload, occurred_at))
        finally:
            self.in_flight -= 1

    def scans(self) -> list[ScanPayload]:
        return [p for _, p, _ in self.events if isinstance(p, ScanPayload)]

    def statuses(self) -> list[tuple[str, str]]:
        return [(p.state, p.condition) for p in self.status_payloads()]

    def status_payloads(self) -> list[DeviceStatusPayload]:
        return [p for _, p, _ in self.events if isinstance(p, DeviceStatusPayload)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        await wait_until(
            predicate, timeout, lambda: f"{self.statuses()}, {len(self.scans())} scans"
        )


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 3.0, seen: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; captured so far: {seen()}")
        await asyncio.sleep(0.005)


def make_config(link: Path, **overrides: Any) -> SerialScannerConfig:
    fields: dict[str, Any] = {
        "id": DEVICE,
        "kind": "scanner",
        "transport": "serial",
        "port": str(link),
        "baudrate": 115200,
    }
    return SerialScannerConfig(**(fields | overrides))


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"scanner:{DEVICE}"]


@pytest.fixture(autouse=True)
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial_driver, "RECONNECT_INITIAL_S", 0.01)
    monkeypatch.setattr(serial_driver, "RECONNECT_MAX_S", 0.05)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[PtyScanner]:
    with PtyScanner(tmp_path / "ttyScanner") as scanner:
        yield scanner


@contextlib.asynccontextmanager
async def running(driver: SerialScanner) -> AsyncIterator["asyncio.Task[None]"]:
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert reader_threads() == []


async def connected(sink: RecordingSink) -> None:
    await sink.wait_for(lambda: ("online", "connected") in sink.statuses())


async def test_scans_arrive_in_order_decoded(emulator: PtyScanner) -> None:
    sink = RecordingSink()
    driver = SerialScanner(make_config(emulator.link), sink)
    generated = list(itertools.islice(realistic_scans(random.Random(7), aim=True), 40))
    codes = [EAN, GS1, QR, *generated]
    async with running(driver):
        await connected(sink)
        for code in codes[:3]:
            emulator.scan(code)
        # The rest coalesced into one write, then split into 5-byte writes: framing holds.
        await asyncio.to_thread(emulator.send_raw, b"".join(c + b"\r\n" for c in codes[3:20]))
        blob = b"".join(c + b"\r\n" for c in codes[20:])
        await asyncio.to_thread(emulator.send_raw, blob, chunk=5)
        await sink.wait_for(lambda: len(sink.scans()) == len(codes))
        health = driver.health()
    scans = sink.scans()
    assert [s.raw for s in scans] == codes
    assert {device for device, _, _ in sink.events} == {DEVICE}
    assert all(occurred_at is not None for _, _, occurred_at in sink.events)
    assert (scans[0].classification, scans[0].symbology) == ("product", "EAN-13")
    assert scans[1].gs1 == {"01": "09501101530003", "17": "250101", "10": "ABC123", "21": "XYZ"}
    assert (scans[2].text, scans[2].classification) == (QR[3:].decode(), "unrecognised")
    gtin_or_gs1 = [s for s in scans[3:] if s.aim_id in ("]E0", "]E4", "]C1")]
    assert gtin_or_gs1
    assert all(s.classification == "product" for s in gtin_or_gs1)
    assert (health.state, health.condition) == ("online", "connected")
    assert health.counters["frames"] == len(codes)
    assert health.counters["bytes"] == sum(len(c) + 2 for c in codes)
    assert health.counters["flood_dropped"] == 0


async def test_each_scan_is_durable_before_the_next_frame_is_handled(
    emulator: PtyScanner,
) -> None:
    sink = RecordingSink(delay_s=0.02)
    async with running(SerialScanner(make_config(emulator.link), sink)):
        await connected(sink)
        emulator.send_raw(b"".join(b"%d\r\n" % i for i in range(5)))
        await sink.wait_for(lambda: len(sink.scans()) == 5)
    assert sink.max_in_flight == 1
    assert [s.text for s in sink.scans()] == ["0", "1", "2", "3", "4"]


async def test_unplug_goes_offline_once_and_replug_reconnects(emulator: PtyScanner) -> None:
    sink = RecordingSink()
    driver = SerialScanner(make_config(emulator.link), sink)
    async with running(driver):
        await connected(sink)
        emulator.scan(EAN)
        await sink.wait_for(lambda: len(sink.scans()) == 1)

        emulator.unplug()
        await sink.wait_for(lambda: len(sink.statuses()) == 2)
        await asyncio.sleep(0.2)  # many failed reopens at the test's fast backoff
        assert sink.statuses() == [("online", "connected"), ("offline", "disconnected")]
        assert sink.status_payloads()[1].detail
        assert driver.health().state == "offline"

        emulator.replug()
        await sink.wait_for(lambda: len(sink.statuses()) == 3)
        assert sink.statuses()[2] == ("online", "connected")
        emulator.scan(QR)
        await sink.wait_for(lambda: len(sink.scans()) == 2)
        health = driver.health()
    assert [s.raw for s in sink.scans()] == [EAN, QR]
    assert health.counters["reconnects"] == 1


async def test_a_missing_port_is_reported_offline_then_picked_up_when_plugged(
    tmp_path: Path,
) -> None:
    link = tmp_path / "ttyLater"
    sink = RecordingSink()
    async with running(SerialScanner(make_config(link), sink)):
        await sink.wait_for(lambda: sink.statuses() == [("offline", "disconnected")])
        assert "No such file" in (sink.status_payloads()[0].detail or "")
        with PtyScanner(link) as emulator:
            await connected(sink)
            emulator.scan(EAN)
            await sink.wait_for(lambda: len(sink.scans()) == 1)
            assert sink.statuses() == [("offline", "disconnected"), ("online", "connected")]


async def test_garbage_is_counted_and_the_driver_keeps_reading(emulator: PtyScanner) -> None:
    sink = RecordingSink()
    driver = SerialScanner(make_config(emulator.link, max_frame_bytes=32), sink)
    async with running(driver):
        await connected(sink)
        emulator.send_raw(b"\xff\xfe\xfd\r\n" + b"ABC\x04DEF\r\n" + b"9" * 100 + b"\r\n\r\n\r\n")
        emulator.scan(EAN)
        await sink.wait_for(lambda: len(sink.scans()) == 4)
        health = driver.health()
    scans = sink.scans()
    assert [s.reason for s in scans[:3]] == [
        "invalid utf-8",
        "control character 0x04 at byte 3",
        "overlong frame: only the first 32 bytes kept",
    ]
    assert scans[3].classification == "product"
    assert health.state == "online"
    counters = health.counters
    assert (counters["frames"], counters["decode_errors"], counters["unrecognised"]) == (4, 2, 3)
    assert (counters["overlong"], counters["empty"]) == (1, 2)


async def test_a_suffixless_scanner_is_framed_by_the_idle_timeout(emulator: PtyScanner) -> None:
    sink = RecordingSink()
    async with running(SerialScanner(make_config(emulator.link, idle_timeout_ms=50), sink)):
        await connected(sink)
        emulator.scan(EAN, terminator=b"")
        await sink.wait_for(lambda: len(sink.scans()) == 1, timeout=1.0)
    assert sink.scans()[0].classification == "product"


async def test_a_flood_is_dropped_and_counted_then_the_device_recovers(
    emulator: PtyScanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter, "FLOOD_RATE_PER_S", 20.0)
    monkeypatch.setattr(reporter, "FLOOD_BURST", 10)
    monkeypatch.setattr(reporter, "FLOOD_CALM_S", 0.3)
    sink = RecordingSink()
    driver = SerialScanner(make_config(emulator.link), sink)
    async with running(driver):
        await connected(sink)
        await asyncio.to_thread(emulator.send_raw, b"]E04006381333931\r\n" * 300)
        await sink.wait_for(lambda: driver.health().counters["frames"] == 300)
        await sink.wait_for(lambda: ("online", "flood_ended") in sink.statuses())
        emulator.scan(QR)
        await sink.wait_for(lambda: sink.scans()[-1].raw == QR)
        health = driver.health()
    passed = len(sink.scans()) - 1
    assert 10 <= passed < 100  # the burst, plus what 20/s refilled meanwhile
    assert health.counters["flood_dropped"] == 300 - passed
    # Every dropped frame reaches the persistent loss counters, not just the in-memory ones.
    assert sink.losses == {"flood": 300 - passed}
    assert sink.statuses() == [
        ("online", "connected"),
        ("degraded", "flooding"),
        ("online", "flood_ended"),
    ]
    assert sink.status_payloads()[2].detail == f"dropped {300 - passed} frames"


async def test_cancel_stops_the_thread_and_releases_the_port(emulator: PtyScanner) -> None:
    sink = RecordingSink()
    driver = SerialScanner(make_config(emulator.link), sink)
    async with running(driver):
        await connected(sink)
        assert len(reader_threads()) == 1
    assert reader_threads() == []
    assert (driver.health().state, driver.health().condition) == ("offline", "stopped")
    # The driver held an exclusive lock; opening exclusively again proves it closed the port.
    serial.Serial(str(emulator.link), exclusive=True).close()


async def test_cancel_while_waiting_to_reopen_is_prompt(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with running(SerialScanner(make_config(tmp_path / "absent"), sink)):
        await sink.wait_for(lambda: len(sink.statuses()) == 1)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0


async def test_a_failing_sink_stops_the_driver_with_its_error(emulator: PtyScanner) -> None:
    sink = RecordingSink(fail_scans=True)
    task = asyncio.create_task(SerialScanner(make_config(emulator.link), sink).run())
    await connected(sink)
    emulator.scan(EAN)
    with pytest.raises(OutboxClosed):
        await asyncio.wait_for(task, timeout=3.0)
    assert reader_threads() == []


async def test_scans_land_in_the_real_outbox_as_envelopes_in_order(
    emulator: PtyScanner, tmp_path: Path
) -> None:
    async with await Outbox.open(tmp_path / "outbox.db", Identity("agent-1", "store-1")) as box:
        driver = SerialScanner(make_config(emulator.link), box)
        async with running(driver):
            await wait_until(lambda: driver.health().state == "online")
            for code in (EAN, GS1, QR):
                emulator.scan(code)
            await wait_until(lambda: driver.health().counters["frames"] == 3)
        rows = await box.read_batch(100, 10**6)
    events = [EVENT_ADAPTER.validate_json(row.body) for row in rows]
    assert [e.kind for e in events] == ["device.status", "scan", "scan", "scan"]
    assert [e.payload.raw for e in events[1:] if isinstance(e.payload, ScanPayload)] == [
        EAN,
        GS1,
        QR,
    ]
    assert {e.device_id for e in events} == {DEVICE}


def test_reconnect_delay_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    ceilings = [min(5.0, 0.2 * 2**n) for n in range(12)]
    for attempt, ceiling in enumerate(ceilings):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(serial_driver, "RECONNECT_INITIAL_S", 0.2)
            patch.setattr(serial_driver, "RECONNECT_MAX_S", 5.0)
            delay = reconnect_delay(attempt, rng)
        assert ceiling / 2 <= delay <= ceiling
