"""`[discovery] mirrors = "auto"`: mirrors announced on loopback mDNS become devices by TXT id."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest
from mdns_loopback import loopback_zeroconf, quick_mdns_timing, unique_service_type
from zeroconf.asyncio import AsyncZeroconf

from agent.config import DiscoverySection, parse_config
from agent.devices.base import Driver, Payload
from agent.devices.mirror import driver as driver_module
from agent.devices.mirror.autoattach import MirrorAutoAttach
from agent.errors import ConfigError
from hardware.emulators.mirror import MirrorEmulator
from protocol.events import DeviceStatusPayload
from protocol.mirror import MirrorTryonPayload

EAN = "4006381333931"


class DeviceSink:
    """EventSink that files every payload under its device id."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Payload]] = []

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        self.events.append((device_id, payload))

    async def count_loss(self, reason: str, count: int = 1) -> None:
        pass

    def tryons(self) -> list[tuple[str, str]]:
        return [(d, p.item_code) for d, p in self.events if isinstance(p, MirrorTryonPayload)]

    def statuses(self, device_id: str) -> list[tuple[str, str]]:
        return [
            (p.state, p.condition)
            for d, p in self.events
            if d == device_id and isinstance(p, DeviceStatusPayload)
        ]


async def until(
    predicate: Callable[[], bool], seen: Callable[[], Any], timeout: float = 5.0
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; so far {seen()}")
        await asyncio.sleep(0.01)


def online(sink: DeviceSink, device_id: str) -> Callable[[], bool]:
    return lambda: sink.statuses(device_id) == [("online", "connected")]


@pytest.fixture(autouse=True)
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_mdns_timing(monkeypatch)
    for name, value in {"RECONNECT_INITIAL_S": 0.01, "RECONNECT_MAX_S": 0.05, "TICK_S": 0.02,
                        "DISCOVERY_TIMEOUT_S": 0.5}.items():  # fmt: skip
        monkeypatch.setattr(driver_module, name, value)


@pytest.fixture
async def aiozc() -> AsyncIterator[AsyncZeroconf]:
    zc = loopback_zeroconf()
    yield zc
    await zc.async_close()


@contextlib.asynccontextmanager
async def attaching(
    attacher: MirrorAutoAttach, drivers: list[Driver]
) -> AsyncIterator[list["asyncio.Task[None]"]]:
    tasks = [asyncio.create_task(attacher.run())]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(d.health().condition == "stopped" for d in drivers)


async def test_two_announced_mirrors_become_two_devices_with_stable_ids(
    aiozc: AsyncZeroconf,
) -> None:
    service_type = unique_service_type()
    sink = DeviceSink()
    drivers: list[Driver] = []
    section = DiscoverySection(mirrors="auto", mirror_ids=["MM-*"])
    tasks: list[asyncio.Task[None]] = []

    def attach(driver: Driver) -> None:
        drivers.append(driver)
        tasks.append(asyncio.create_task(driver.run()))

    attacher = MirrorAutoAttach(
        section, sink, attach, zeroconf=aiozc, declared_mirrors=frozenset({"MM-3"}),
        taken_device_ids=frozenset({"mirror-3"}), service_type=service_type,
    )  # fmt: skip
    mirrors = {
        mirror_id: MirrorEmulator(mirror_id, service_type=service_type)
        for mirror_id in ("MM-1", "MM-2", "MM-3", "XX-9")
    }
    async with contextlib.AsyncExitStack() as stack:
        for mirror in mirrors.values():
            await stack.enter_async_context(mirror)
        async with attaching(attacher, drivers) as own:
            await until(lambda: len(drivers) == 2 and attacher.counters["not_allowed"] == 1,
                        lambda: (attacher.counters, sink.events))  # fmt: skip
            for device_id in ("mirror-MM-1", "mirror-MM-2"):
                await until(online(sink, device_id), lambda: sink.events)
            for mirror_id in ("MM-1", "MM-2"):
                shopper = mirrors[mirror_id].session_start()
                mirrors[mirror_id].tryon(shopper.session_id, barcode=EAN)
            await until(lambda: len(sink.tryons()) == 2, lambda: sink.events)
            # MM-2 reboots onto another port: the same device follows it, nothing is re-attached.
            await mirrors["MM-2"].stop()
            await mirrors["MM-2"].start(0)
            await until(lambda: len(sink.statuses("mirror-MM-2")) == 3, lambda: sink.events)
            health = {d.device_id: d.health() for d in drivers}
            own.extend(tasks)
    assert sorted(health) == ["mirror-MM-1", "mirror-MM-2"]  # TXT id → stable device id
    assert {h.state for h in health.values()} == {"online"}
    assert sorted(sink.tryons()) == [("mirror-MM-1", EAN), ("mirror-MM-2", EAN)]
    assert sink.statuses("mirror-MM-2") == [
        ("online", "connected"), ("offline", "disconnected"), ("online", "connected")]  # fmt: skip
    assert {d for d, _ in sink.events} == {"mirror-MM-1", "mirror-MM-2"}  # MM-3 is declared
    assert attacher.counters == {"attached": 2, "not_allowed": 1, "over_limit": 0,
                                 "bad_device_id": 0}  # fmt: skip


async def test_the_limit_and_taken_ids_are_counted_not_attached(aiozc: AsyncZeroconf) -> None:
    service_type = unique_service_type()
    drivers: list[Driver] = []
    section = DiscoverySection(mirrors="auto", max_mirrors=1, mirror_device_prefix="")
    attacher = MirrorAutoAttach(
        section, DeviceSink(), drivers.append, zeroconf=aiozc,
        taken_device_ids=frozenset({"MM-2"}), service_type=service_type,
    )  # fmt: skip
    async with (
        MirrorEmulator("MM-1", service_type=service_type),
        MirrorEmulator("MM-2", service_type=service_type),
        MirrorEmulator("MM-4", service_type=service_type),
        attaching(attacher, []),
    ):
        await until(lambda: sum(attacher.counters.values()) == 3, lambda: attacher.counters)
        await asyncio.sleep(0.2)
    assert [d.device_id for d in drivers] == ["MM-1"]
    assert attacher.counters == {"attached": 1, "not_allowed": 0, "over_limit": 1,
                                 "bad_device_id": 1}  # fmt: skip


def test_discovery_config_is_opt_in_and_checked() -> None:
    base = '[cloud]\nurl = "http://127.0.0.1:1"\n'
    assert parse_config(base).discovery.mirrors == "off"
    on = parse_config(base + '[discovery]\nmirrors = "auto"\nmirror_ids = ["MM-*"]\n'
                      'interfaces = ["192.168.10.2"]\n')  # fmt: skip
    assert (on.discovery.mirrors, on.discovery.mirror_ids) == ("auto", ["MM-*"])
    with pytest.raises(ConfigError, match=r"discovery\.mirrors"):
        parse_config(base + '[discovery]\nmirrors = "yes"\n')
    with pytest.raises(ConfigError, match=r"discovery\.interfaces"):
        parse_config(base + '[discovery]\ninterfaces = ["eth0"]\n')
