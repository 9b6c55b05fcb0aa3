"""The one device state machine: its table, and the exact device.status sequences every driver
produces on unplug/replug and power cycles, against the emulators over ptys, TCP and HTTP."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config import MirrorConfig, SerialScannerConfig, TcpPrinterConfig, TcpScannerConfig
from agent.devices.base import Driver, Payload
from agent.devices.mirror import driver as mirror_driver
from agent.devices.mirror.driver import MirrorDriver
from agent.devices.printer import driver as printer_driver
from agent.devices.printer.driver import TcpPrinter
from agent.devices.scanner import serial_driver, tcp_driver
from agent.devices.scanner.serial_driver import SerialScanner
from agent.devices.scanner.tcp_driver import TcpScanner
from agent.devices.states import DeviceStateMachine, Signal
from hardware.emulators.lan_scanner import LanScannerServer
from hardware.emulators.mirror import MirrorEmulator
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner
from protocol.events import DeviceStatusPayload

CONNECTED = ("online", "connected")
DISCONNECTED = ("offline", "disconnected")
# Unplug, wait through several failed reopens, replug; then a quick power cycle.
UNPLUG_REPLUG_CYCLE = [CONNECTED, DISCONNECTED, CONNECTED, DISCONNECTED, CONNECTED]


class StatusSink:
    """EventSink that keeps device.status events only."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        if isinstance(payload, DeviceStatusPayload):
            self.statuses.append((payload.state, payload.condition))

    async def count_loss(self, reason: str, count: int = 1) -> None:
        pass

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` statuses were captured."""
        deadline = time.monotonic() + timeout
        while len(self.statuses) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for status {count}; so far {self.statuses}")
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(driver: Driver) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (driver.health().state, driver.health().condition) == ("offline", "stopped")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (serial_driver, tcp_driver, printer_driver, mirror_driver):
        monkeypatch.setattr(module, "RECONNECT_INITIAL_S", 0.01)
        monkeypatch.setattr(module, "RECONNECT_MAX_S", 0.05)


# --- the table ---------------------------------------------------------------------------

Step = tuple[Signal, str | None]
SEQUENCES: list[tuple[str, list[Step], list[tuple[str, str]]]] = [
    ("a port that never opens says so once",
     [(Signal.OPEN_FAILED, None)] * 3, [DISCONNECTED]),
    ("open, lose, fail to reopen twice, reopen",
     [(Signal.OPENED, None), (Signal.LOST, None), (Signal.OPEN_FAILED, None),
      (Signal.LOST, None), (Signal.OPENED, None)],
     [CONNECTED, DISCONNECTED, CONNECTED]),
    ("faults: a repeat is silent, a new condition is not, clearing ends it",
     [(Signal.OPENED, None), (Signal.FAULT, "paper_out"), (Signal.FAULT, "paper_out"),
      (Signal.FAULT, "cover_open"), (Signal.CLEARED, "recovered"), (Signal.CLEARED, "recovered")],
     [CONNECTED, ("degraded", "paper_out"), ("degraded", "cover_open"), ("online", "recovered")]),
    ("a fault or a clear with no link changes nothing",
     [(Signal.FAULT, "flooding"), (Signal.CLEARED, "flood_ended"), (Signal.OPEN_FAILED, None),
      (Signal.FAULT, "flooding")],
     [DISCONNECTED]),
    ("not found, then found but refusing, then up",
     [(Signal.NOT_FOUND, None), (Signal.NOT_FOUND, None), (Signal.LOST, None),
      (Signal.NOT_FOUND, None), (Signal.OPENED, None)],
     [("offline", "not_found"), DISCONNECTED, ("offline", "not_found"), CONNECTED]),
    ("degraded then lost",
     [(Signal.OPENED, None), (Signal.FAULT, "flooding"), (Signal.LOST, None)],
     [CONNECTED, ("degraded", "flooding"), DISCONNECTED]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "steps", "expected"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
async def test_the_table_emits_only_changes(
    name: str, steps: list[Step], expected: list[tuple[str, str]]
) -> None:
    sink = StatusSink()
    machine = DeviceStateMachine("dev-1", sink)
    for signal, condition in steps:
        await machine.fire(signal, "detail", condition)
    assert sink.statuses == expected
    machine.stop()
    assert (machine.state, machine.condition) == ("offline", "stopped")


def test_a_fault_without_a_condition_is_a_bug() -> None:
    machine = DeviceStateMachine("dev-1", StatusSink())
    machine.apply(Signal.OPENED, None)
    with pytest.raises(ValueError, match="needs a condition"):
        machine.apply(Signal.FAULT, None)


# --- every driver, against its emulator ----------------------------------------------------


async def unplug_replug_and_power_cycle(
    sink: StatusSink,
    unplug: Callable[[], Any],
    replug: Callable[[], Any],
) -> None:
    """Connected → unplugged (kept out through several retries) → back → power-cycled → back."""
    await sink.wait_for(1)
    await unplug()
    await sink.wait_for(2)
    await asyncio.sleep(0.3)  # many failed retries: still one "disconnected"
    await replug()
    await sink.wait_for(3)
    await unplug()  # a power cycle: off and straight back on
    await sink.wait_for(4)
    await replug()
    await sink.wait_for(5)
    await asyncio.sleep(0.2)  # nothing else may follow


async def test_serial_scanner(tmp_path: Path) -> None:
    sink = StatusSink()
    with PtyScanner(tmp_path / "ttyScanner") as scanner:
        config = SerialScannerConfig(
            id="scanner-1", kind="scanner", transport="serial", port=str(scanner.link)
        )

        async def unplug() -> None:
            scanner.unplug()

        async def replug() -> None:
            scanner.replug()

        async with running(SerialScanner(config, sink)):
            await unplug_replug_and_power_cycle(sink, unplug, replug)
    assert sink.statuses == UNPLUG_REPLUG_CYCLE


async def test_tcp_scanner() -> None:
    sink = StatusSink()
    servers = [LanScannerServer()]
    port = await servers[0].start()
    config = TcpScannerConfig(id="scanner-2", kind="scanner", transport="tcp", host="127.0.0.1",
                              port=port)  # fmt: skip

    async def unplug() -> None:  # the device server goes away: links reset, port refuses
        await servers[-1].close()

    async def replug() -> None:
        servers.append(LanScannerServer(port=port))
        await servers[-1].start()

    try:
        async with running(TcpScanner(config, sink)):
            await unplug_replug_and_power_cycle(sink, unplug, replug)
    finally:
        await servers[-1].close()
    assert sink.statuses == UNPLUG_REPLUG_CYCLE


async def test_printer(tmp_path: Path) -> None:
    sink = StatusSink()
    async with PrinterEmulator() as emulator:
        port = await emulator.start_tcp()
        config = TcpPrinterConfig(id="printer-1", kind="printer", transport="tcp",
                                  host="127.0.0.1", port=port, poll_interval_s=0.05,
                                  status_timeout_s=0.5)  # fmt: skip
        async with running(TcpPrinter(config, sink, state_dir=tmp_path)):
            await unplug_replug_and_power_cycle(sink, emulator.power_off, emulator.power_on)
            emulator.set_status(paper_out=True)
            await sink.wait_for(6)
            emulator.set_status(paper_out=False)
            await sink.wait_for(7)
            await asyncio.sleep(0.2)
    assert sink.statuses == [*UNPLUG_REPLUG_CYCLE, ("degraded", "paper_out"),
                             ("online", "recovered")]  # fmt: skip


async def test_mirror() -> None:
    sink = StatusSink()
    async with MirrorEmulator("MM-7", mdns=False) as mirror:
        port = mirror.port  # started by the context manager
        config = MirrorConfig(id="mirror-1", kind="mirror", transport="http", mirror_id="MM-7",
                              host="127.0.0.1", port=port)  # fmt: skip

        async def replug() -> None:
            await mirror.start(port)

        async with running(MirrorDriver(config, sink)):
            await unplug_replug_and_power_cycle(sink, mirror.stop, replug)
    assert sink.statuses == UNPLUG_REPLUG_CYCLE
