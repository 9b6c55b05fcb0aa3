"""MirrorDriver and MirrorDiscovery against MirrorEmulator: real HTTP, WebSocket and mDNS on lo."""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mdns_loopback import loopback_zeroconf, quick_mdns_timing, unique_service_type
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from agent.config import MirrorConfig
from agent.devices.base import Payload
from agent.devices.mirror import driver as driver_module
from agent.devices.mirror.cursor import Cursor, cursor_path, load_cursor, save_cursor
from agent.devices.mirror.discovery import MirrorAddress, MirrorDiscovery
from agent.devices.mirror.driver import MirrorDriver
from agent.devices.mirror.errors import MirrorRejectedError, MirrorUnavailableError
from hardware.emulators.mirror import MirrorEmulator
from protocol.events import DeviceStatusPayload
from protocol.mirror import MirrorCouponClaimedPayload, MirrorSessionPayload, MirrorTryonPayload
from protocol.mirror_api import DisplayRequest, ShowCoupon, ShowMessage

DEVICE = "mirror-fitting-1"
MIRROR = "MM-0042"
EAN = "4006381333931"
EPC = "3034257BF7194E4000001A85"


class RecordingSink:
    """In-memory EventSink; `gate`, when set, holds mirror events until it is opened."""

    def __init__(self) -> None:
        self.events: list[tuple[Payload, datetime | None]] = []
        self.losses: dict[str, int] = {}
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        if self.gate is not None and not isinstance(payload, DeviceStatusPayload):
            self.waiting += 1
            await self.gate.wait()
        self.events.append((payload, occurred_at))

    async def count_loss(self, reason: str, count: int = 1) -> None:
        self.losses[reason] = self.losses.get(reason, 0) + count

    def recorded(self) -> list[Payload]:
        return [p for p, _ in self.events if not isinstance(p, DeviceStatusPayload)]

    def statuses(self) -> list[tuple[str, str]]:
        return [
            (p.state, p.condition) for p, _ in self.events if isinstance(p, DeviceStatusPayload)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        await wait_until(predicate, timeout, lambda: f"{self.statuses()} {self.recorded()}")


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, seen: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; so far: {seen()}")
        await asyncio.sleep(0.005)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    await asyncio.sleep(0)
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    assert not leftover, f"tasks left running: {leftover}"


@pytest.fixture(autouse=True)
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_mdns_timing(monkeypatch)
    for name, value in {
        "RECONNECT_INITIAL_S": 0.01, "RECONNECT_MAX_S": 0.05, "TICK_S": 0.02,
        "LOSS_FLUSH_S": 0.05, "CURSOR_SAVE_S": 0.05, "DISCOVERY_TIMEOUT_S": 0.5,
    }.items():  # fmt: skip
        monkeypatch.setattr(driver_module, name, value)


@pytest.fixture
def service_type() -> str:
    return unique_service_type()


@pytest.fixture
async def aiozc() -> AsyncIterator[AsyncZeroconf]:
    """The agent's zeroconf; made before any mirror starts, so it hears the announcements."""
    zc = loopback_zeroconf()
    yield zc
    await zc.async_close()


@pytest.fixture
async def mirror(aiozc: AsyncZeroconf, service_type: str) -> AsyncIterator[MirrorEmulator]:
    emulator = MirrorEmulator(MIRROR, service_type=service_type)  # tests start it
    yield emulator
    await emulator.close()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def make_driver(
    aiozc: AsyncZeroconf, service_type: str, sink: RecordingSink
) -> Callable[..., MirrorDriver]:
    def make(
        state_dir: Path | None = None, sink: RecordingSink = sink, **overrides: Any
    ) -> MirrorDriver:
        fields: dict[str, Any] = {"id": DEVICE, "kind": "mirror", "transport": "mdns"}
        config = MirrorConfig(**(fields | {"mirror_id": MIRROR} | overrides))
        return MirrorDriver(
            config, sink, state_dir=state_dir, zeroconf=aiozc, service_type=service_type
        )

    return make


@contextlib.asynccontextmanager
async def running(driver: MirrorDriver) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert driver.health().condition == "stopped"


CONNECTED = ("online", "connected")


async def test_discovery_finds_mirrors_by_txt_id_and_sees_them_move(
    aiozc: AsyncZeroconf, service_type: str
) -> None:
    a = MirrorEmulator("MM-A", service_type=service_type)
    b = MirrorEmulator("MM-B", service_type=service_type)
    stranger = AsyncServiceInfo(
        service_type, f"junk.{service_type}", addresses=[b"\x7f\x00\x00\x01"], port=9,
        properties={"txtvers": "1"}, server="junk.local.",
    )  # fmt: skip
    other = loopback_zeroconf()
    async with MirrorDiscovery(aiozc, service_type) as discovery, a, b:
        await (await other.async_register_service(stranger))
        first = await discovery.wait_for("MM-A", 3.0)
        assert first == MirrorAddress("127.0.0.1", a.port)
        assert await discovery.wait_for("MM-B", 3.0) == MirrorAddress("127.0.0.1", b.port)
        assert await discovery.wait_for("MM-C", 0.1) is None
        await wait_until(lambda: discovery.bad_adverts == 1)
        assert set(discovery.mirrors()) == {"MM-A", "MM-B"}

        await a.stop()  # goodbye: forgotten at once, no waiting for a TTL
        await wait_until(lambda: discovery.lookup("MM-A") is None)
        await a.start()
        moved = await discovery.wait_for("MM-A", 3.0, newer_than=first)
        assert moved == MirrorAddress("127.0.0.1", a.port)
        assert moved.port != first.port
    await discovery.async_close()  # idempotent
    await other.async_close()


async def test_events_are_recorded_in_order_as_protocol_payloads(
    mirror: MirrorEmulator, sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    driver = make_driver()
    async with running(driver):
        await mirror.start()
        start = mirror.session_start(trigger="rfid", staff_id="guide-7")
        sid = start.session_id
        sent = [
            start,
            mirror.tryon(sid, barcode=EAN),
            mirror.tryon(sid, epc=EPC),
            mirror.photo(sid, epc=EPC),
            mirror.coupon_claim(sid, "SPRING-10-ABCD", "spring"),
            mirror.session_end(sid, 61.5),
        ]
        await wait_until(lambda: mirror.acked == sent[-1].counter)
    assert sink.recorded() == [
        MirrorSessionPayload(session_id=sid, phase="start", staff_id="guide-7"),
        MirrorTryonPayload(session_id=sid, item_code=EAN, item_kind="barcode"),
        MirrorTryonPayload(session_id=sid, item_code=EPC, item_kind="epc"),
        MirrorTryonPayload(session_id=sid, item_code=EPC, item_kind="epc", photo=True),
        MirrorCouponClaimedPayload(session_id=sid, token="SPRING-10-ABCD", campaign_hint="spring"),
        MirrorSessionPayload(session_id=sid, phase="end", duration_s=61.5),
    ]
    assert [at for p, at in sink.events if p in sink.recorded()] == [m.at for m in sent]
    assert sink.statuses() == [CONNECTED]
    assert driver.health().counters["recorded"] == 6


async def test_an_event_is_durable_before_the_mirror_hears_the_ack(
    mirror: MirrorEmulator, sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    sink.gate = asyncio.Event()
    async with running(make_driver()):
        await mirror.start()
        await sink.wait_for(lambda: sink.statuses() == [CONNECTED])
        event = mirror.session_start()
        await sink.wait_for(lambda: sink.waiting == 1)
        await asyncio.sleep(0.05)  # the driver had every chance to ack early
        assert mirror.acked == 0
        sink.gate.set()
        await wait_until(lambda: mirror.acked == event.counter)
    assert len(sink.recorded()) == 1


async def test_display_reaches_the_mirror_once_and_a_refusal_is_reported(
    mirror: MirrorEmulator, sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    coupon = DisplayRequest(
        request_id="r1", content=ShowCoupon(qr_payload="https://c.example/ABCD", caption="-10%"),
        ttl_s=60, session_id="s-1",
    )  # fmt: skip
    bad = DisplayRequest.model_construct(request_id="r2", content=ShowMessage(text="hi"), ttl_s=0)
    driver = make_driver()
    async with running(driver):
        await mirror.start()
        await sink.wait_for(lambda: sink.statuses() == [CONNECTED])
        assert (await driver.display(coupon)).request_id == "r1"
        await driver.display(coupon)  # a retry shows nothing twice
        with pytest.raises(MirrorRejectedError, match="ttl_s"):
            await driver.display(bad)
    assert mirror.displayed == [coupon]
    counters = driver.health().counters
    assert (counters["displays"], counters["display_failures"]) == (2, 1)
    with pytest.raises(MirrorUnavailableError):
        await driver.display(coupon)  # not running: nothing to talk through


async def test_a_mirror_restarted_on_another_port_loses_and_repeats_nothing(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mirror: MirrorEmulator,
    sink: RecordingSink,
    make_driver: Callable[..., MirrorDriver],
) -> None:
    # A backoff far beyond the waits below: only the mDNS announcement can bring it back.
    monkeypatch.setattr(driver_module, "RECONNECT_INITIAL_S", 60.0)
    monkeypatch.setattr(driver_module, "RECONNECT_MAX_S", 60.0)
    driver = make_driver(state_dir=tmp_path)
    down = [CONNECTED, ("offline", "disconnected")]
    async with running(driver):
        await mirror.start()
        old_port = mirror.port
        sid = mirror.session_start().session_id
        mirror.tryon(sid, barcode=EAN)
        await sink.wait_for(lambda: len(sink.recorded()) == 2)
        await mirror.stop()
        await sink.wait_for(lambda: sink.statuses() == down)
        mirror.tryon(sid, epc=EPC)  # while the API is down: kept in the mirror's backlog
        mirror.coupon_claim(sid, "BACK-AGAIN")
        await mirror.start()
        assert mirror.port != old_port
        await sink.wait_for(lambda: sink.statuses() == [*down, CONNECTED], timeout=3.0)
        await mirror.stop()  # and a reboot that comes back on the same port
        await sink.wait_for(lambda: sink.statuses() == [*down, *down])
        await mirror.start(port=mirror.port)  # identical records: RFC 6762 §14 delays them ~1 s
        last = mirror.session_end(sid, 12.0)
        await wait_until(lambda: mirror.acked == last.counter, timeout=3.0)
        await asyncio.sleep(0.05)  # room for a stray duplicate to show up
    assert [type(p).__name__ for p in sink.recorded()] == [
        "MirrorSessionPayload", "MirrorTryonPayload", "MirrorTryonPayload",
        "MirrorCouponClaimedPayload", "MirrorSessionPayload",
    ]  # fmt: skip
    assert sink.statuses() == [*down, *down, CONNECTED]
    assert driver.health().counters["reconnects"] == 2
    assert driver.health().counters["duplicate"] == 0
    assert sink.losses == {}
    assert load_cursor(cursor_path(tmp_path, DEVICE)) == Cursor(MIRROR, mirror.epoch, 5)


async def test_an_agent_restart_resumes_after_the_saved_cursor(
    tmp_path: Path, mirror: MirrorEmulator, make_driver: Callable[..., MirrorDriver]
) -> None:
    first, second = RecordingSink(), RecordingSink()
    await mirror.start()
    sid = mirror.session_start().session_id
    async with running(make_driver(state_dir=tmp_path, sink=first)):
        mirror.tryon(sid, barcode=EAN)
        await first.wait_for(lambda: len(first.recorded()) == 2)
    mirror.tryon(sid, epc=EPC)  # while the agent is down
    async with running(make_driver(state_dir=tmp_path, sink=second)):
        last = mirror.session_end(sid)
        await wait_until(lambda: mirror.acked == last.counter)
        await asyncio.sleep(0.05)
    assert second.recorded() == [
        MirrorTryonPayload(session_id=sid, item_code=EPC, item_kind="epc"),
        MirrorSessionPayload(session_id=sid, phase="end"),
    ]


async def test_stopping_mid_cursor_write_never_overlaps_two_writes(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mirror: MirrorEmulator,
    sink: RecordingSink,
    make_driver: Callable[..., MirrorDriver],
) -> None:
    writing, overlaps = threading.Lock(), []

    def slow_save(path: Path, cursor: Cursor) -> None:
        if not writing.acquire(blocking=False):
            overlaps.append(cursor)
            return
        try:
            time.sleep(0.05)  # a slow disk: cancellation lands while this thread writes
            save_cursor(path, cursor)
        finally:
            writing.release()

    monkeypatch.setattr(driver_module, "save_cursor", slow_save)
    await mirror.start()
    mirror.session_start()
    async with running(make_driver(state_dir=tmp_path)):
        await sink.wait_for(lambda: len(sink.recorded()) == 1)
    assert overlaps == []
    assert load_cursor(cursor_path(tmp_path, DEVICE)) == Cursor(MIRROR, mirror.epoch, 1)


async def test_events_evicted_while_away_are_counted_as_lost(
    aiozc: AsyncZeroconf,
    service_type: str,
    sink: RecordingSink,
    make_driver: Callable[..., MirrorDriver],
) -> None:
    async with MirrorEmulator(MIRROR, service_type=service_type, backlog=5) as mirror:
        driver = make_driver()
        sid = mirror.session_start().session_id
        async with running(driver):
            await sink.wait_for(lambda: len(sink.recorded()) == 1)
        for _ in range(10):
            mirror.tryon(sid, barcode=EAN)
        async with running(driver):  # run() again, as the supervisor would
            await wait_until(lambda: mirror.acked == 11)
            await sink.wait_for(lambda: sink.losses.get("mirror_gap") == 5)
    assert len(sink.recorded()) == 1 + 5
    assert driver.health().counters["gap_lost"] == 5


async def test_malformed_unknown_and_invalid_frames_are_counted_and_survived(
    mirror: MirrorEmulator, sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    driver = make_driver()
    async with running(driver):
        await mirror.start()
        await sink.wait_for(lambda: sink.statuses() == [CONNECTED])
        sid = mirror.session_start().session_id
        mirror.send_garbage()
        mirror.emit_raw({"type": "size_request", "session_id": sid, "size": "M"})
        mirror.emit_raw({"type": "tryon", "session_id": sid, "item": {}})
        last = mirror.tryon(sid, barcode=EAN)
        await wait_until(lambda: mirror.acked == last.counter)
    counters = driver.health().counters
    assert [counters[k] for k in ("malformed", "unknown_type", "invalid", "recorded")] == [
        1,
        1,
        1,
        2,
    ]
    assert sink.statuses() == [CONNECTED]
    assert sink.losses == {}


async def test_a_flood_is_shed_and_counted_while_coupons_and_other_mirrors_get_through(
    monkeypatch: pytest.MonkeyPatch,
    service_type: str,
    mirror: MirrorEmulator,
    sink: RecordingSink,
    make_driver: Callable[..., MirrorDriver],
) -> None:
    for name, value in {"FLOOD_RATE_PER_S": 5.0, "FLOOD_BURST": 10, "FLOOD_CALM_S": 0.3}.items():
        monkeypatch.setattr(driver_module, name, value)
    other_sink = RecordingSink()
    async with MirrorEmulator("MM-CALM", service_type=service_type, mdns=False) as other:
        flooded = make_driver()
        calm = make_driver(
            id="mirror-2", transport="http", mirror_id="MM-CALM", host="127.0.0.1",
            port=other.port, sink=other_sink,
        )  # fmt: skip
        async with running(flooded), running(calm):
            await mirror.start()
            await sink.wait_for(lambda: sink.statuses() == [CONNECTED])
            sid = mirror.session_start().session_id
            mirror.flood(sid, 300)
            claim = mirror.coupon_claim(sid, "FLOOD-PROOF-1")
            other.tryon(other.session_start().session_id, barcode=EAN)
            await other_sink.wait_for(lambda: len(other_sink.recorded()) == 2)
            await wait_until(lambda: mirror.acked == claim.counter)
            await sink.wait_for(lambda: sink.statuses()[-1] == ("online", "flood_ended"))
            after = mirror.tryon(sid, barcode=EAN)
            await wait_until(lambda: mirror.acked == after.counter)
    counters = flooded.health().counters
    tryons = [p for p in sink.recorded() if isinstance(p, MirrorTryonPayload)]
    assert counters["flood_dropped"] >= 250
    assert counters["flood_dropped"] + len(tryons) == 300 + 1
    assert sink.losses == {"mirror_flood": counters["flood_dropped"]}
    assert MirrorCouponClaimedPayload(session_id=sid, token="FLOOD-PROOF-1") in sink.recorded()
    assert tryons[-1].item_code == EAN  # recorded again once calm
    assert sink.statuses() == [
        CONNECTED, ("degraded", "flooding"), ("online", "flood_ended"),
    ]  # fmt: skip
    assert other_sink.statuses() == [CONNECTED]


async def test_an_unannounced_mirror_is_not_found_until_it_appears(
    mirror: MirrorEmulator, sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    async with running(make_driver()):
        await sink.wait_for(lambda: sink.statuses() == [("offline", "not_found")])
        await asyncio.sleep(0.1)  # retries while absent emit nothing more
        await mirror.start()
        await sink.wait_for(lambda: sink.statuses() == [("offline", "not_found"), CONNECTED])


async def test_a_fixed_address_answering_as_another_mirror_is_not_subscribed(
    sink: RecordingSink, make_driver: Callable[..., MirrorDriver]
) -> None:
    async with MirrorEmulator("MM-WRONG", mdns=False) as stranger:
        driver = make_driver(transport="http", host="127.0.0.1", port=stranger.port)
        async with running(driver):
            await sink.wait_for(lambda: sink.statuses() == [("offline", "disconnected")])
            assert "MM-WRONG" in (driver.health().detail or "")
        assert stranger.subscriptions == 0
