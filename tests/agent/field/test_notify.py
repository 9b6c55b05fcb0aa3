"""sd_notify against a real AF_UNIX datagram socket: READY, STATUS, WATCHDOG, STOPPING.

The watchdog is fed only while every loop keeps its promise: a wedged sync loop (its outbox
thread stuck) or a wedged driver loop (its capture never returns) stops the pings, and they
resume once the loop moves again.
"""

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from field_helpers import NotifyListener, fake_credentials, until, write_config

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    SerialScannerConfig,
    StatusPageSection,
)
from agent.devices.base import Payload
from agent.notify import Notifier, encode, socket_address, watchdog_interval_s
from agent.runtime import AgentRuntime
from hardware.emulators.scanner import PtyScanner

NOWHERE = "http://127.0.0.1:9"  # discard port: nothing listens, the agent just buffers


def test_datagram_encoding_and_addresses() -> None:
    assert encode({"READY": "1", "STATUS": "two\nlines"}) == b"READY=1\nSTATUS=two lines\n"
    with pytest.raises(ValueError, match="invalid sd_notify key"):
        encode({"ready": "1"})
    assert socket_address("@name") == b"\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=1) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, pid=1) is None
    assert watchdog_interval_s({}, pid=1) is None


def test_a_vanished_supervisor_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"), 1.0)
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False
    assert notifier.failures == 2
    notifier.close()
    assert Notifier(None).ready("up") is False  # not under systemd: silently nothing


def test_agent_process_says_ready_pings_and_says_stopping_on_sigterm(tmp_path: Path) -> None:
    listener = NotifyListener()
    state = tmp_path / "state"
    fake_credentials(state, NOWHERE)
    config = write_config(tmp_path / "agent.toml", state, NOWHERE, "[status_page]\nport = 0\n")
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "agent", "run", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        async def scenario() -> None:
            await listener.wait_for(lambda m: m.get("READY") == "1", 30)
            ready = next(m for m in listener.messages if m.get("READY") == "1")
            assert "backlog 0" in ready["STATUS"], ready
            listener.pings_during()
            await asyncio.sleep(1.5)
            assert listener.pings_during() >= 4  # every 0.2 s (half of WATCHDOG_USEC)
            proc.send_signal(signal.SIGTERM)
            await listener.wait_for(lambda m: m.get("STOPPING") == "1", 20)

        asyncio.run(scenario())
        assert proc.wait(30) == 0, log.read_text()
        # READY comes first; nothing after STOPPING but the end of the process.
        assert listener.messages[0].get("READY") == "1"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        listener.close()


def _runtime(tmp_path: Path, listener: NotifyListener, devices: list[Any]) -> AgentRuntime:
    config = AgentConfig(
        agent=AgentSection(state_dir=tmp_path / "state", stall_timeout_s=0.3),
        cloud=CloudSection(
            url=NOWHERE, heartbeat_interval_s=0.2, backoff_cap_s=0.2, request_timeout_s=1.0
        ),
        status_page=StatusPageSection(enabled=False),
        devices=devices,
    )
    credentials = fake_credentials(tmp_path / "state", NOWHERE)
    return AgentRuntime(config, credentials, Notifier(listener.address, 0.05))


async def test_pings_stop_while_the_sync_loop_is_wedged_and_resume_after(tmp_path: Path) -> None:
    listener = NotifyListener(abstract=True)
    runtime = _runtime(tmp_path, listener, [])
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))
    release = threading.Event()
    try:
        await listener.wait_for(lambda m: m.get("READY") == "1", 10)
        await asyncio.sleep(0.5)
        assert listener.pings_during() >= 3
        # The disk under the outbox hangs: its writer and reader threads block, so the drain's
        # next read never returns. (Real stuck threads, not patched methods.)
        assert runtime.outbox is not None
        blocked = asyncio.ensure_future(runtime.outbox._call(lambda store: release.wait(30)))
        reader_blocked = runtime.outbox._reader._pool.submit(release.wait, 30)
        await listener.wait_for(
            lambda m: "WEDGED" in m.get("STATUS", "") and "sync" in m["STATUS"], 10
        )
        listener.pings_during()
        await asyncio.sleep(1.0)
        assert listener.pings_during() == 0
        assert runtime.watchdog is not None
        assert "sync" in [w.name for w in runtime.watchdog.wedges]
        release.set()
        await blocked
        await asyncio.wrap_future(reader_blocked)
        await until(lambda: listener.pings_during() > 0, 10)
        assert runtime.watchdog.wedges == []
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(agent, 30)
        listener.close()


class _HungSink:
    """Wraps the real sink; once `hang` is set, captures wait until `release` is."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.hang = False
        self.release = asyncio.Event()

    async def capture(
        self, device_id: str, payload: Payload, occurred_at: datetime | None = None
    ) -> None:
        if self.hang:
            await self.release.wait()
        await self.inner.capture(device_id, payload, occurred_at)  # type: ignore[attr-defined]

    async def count_loss(self, reason: str, count: int = 1) -> None:
        await self.inner.count_loss(reason, count)  # type: ignore[attr-defined]


async def test_pings_stop_while_a_driver_loop_is_wedged(tmp_path: Path) -> None:
    listener = NotifyListener()
    scanner = PtyScanner(tmp_path / "scanner")
    device = SerialScannerConfig(
        id="scanner-1", kind="scanner", transport="serial", port=str(scanner.link)
    )
    runtime = _runtime(tmp_path, listener, [device])
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))
    try:
        await listener.wait_for(lambda m: m.get("READY") == "1", 10)
        (driver,) = runtime.drivers
        await until(lambda: driver.health().state == "online", 10)
        reporter = driver._reporter  # type: ignore[attr-defined]
        hung = _HungSink(reporter._sink)
        reporter._sink = hung
        hung.hang = True
        await asyncio.to_thread(scanner.scan, "4006381333931")  # the reader thread now blocks
        await listener.wait_for(lambda m: "WEDGED: scanner-1" in m.get("STATUS", ""), 10)
        listener.pings_during()
        await asyncio.sleep(0.6)
        assert listener.pings_during() == 0
        assert runtime.watchdog is not None
        assert [w.name for w in runtime.watchdog.wedges] == ["scanner-1"]  # sync is fine
        hung.release.set()
        await until(lambda: listener.pings_during() > 0, 10)
        await until(lambda: runtime.recent.scans, 5)
        assert runtime.recent.scans[-1].text == "4006381333931"  # nothing was lost
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
        scanner.close()
        listener.close()
