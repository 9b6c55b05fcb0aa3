"""Issue 3's proof for printers: jobs pending while the printer cannot print survive a kill -9.

The cloud and the agent are `storeedge` processes; the printer is the emulator on loopback TCP,
run on its own event loop in this process so the test can cut its power or its paper. Jobs are
spooled into the agent's print queue from outside (agent.devices.printer.spool), the agent is
killed with SIGKILL while they wait, restarted, the printer recovers, and then every job must be
on paper exactly once and in the cloud as exactly one print.completed.
"""

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from stack import AgentProcess, CloudProcess, free_port, outbox_state, run_cli, wait_until

from agent.devices.printer.queue import QUEUE_FILE
from agent.devices.printer.spool import spool_template
from hardware.emulators.printer import PrinterEmulator

STORE = "store-print-e2e"
PRINTER = "printer-till"
JOBS = [f"e2e-job-{n}" for n in range(3)]
_T = TypeVar("_T")


class _PrinterThread:
    """The printer emulator on its own event loop, so the test body stays synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulator = self.call(self._make)
        self.port = self.call(self.emulator.start_tcp)

    async def _make(self) -> PrinterEmulator:
        return PrinterEmulator()

    def call(self, fn: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(10)

    def run(self, fn: Callable[[], object]) -> None:
        async def call() -> None:
            fn()

        self.call(call)

    def titles(self) -> list[str]:
        receipts = list(self.emulator.receipts)
        return [next(line for line in r.lines if line.startswith("COUPON")) for r in receipts]

    def close(self) -> None:
        self.call(self.emulator.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _agent_toml(state: Path, cloud_url: str, printer_port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
log_level = "INFO"

[cloud]
url = "{cloud_url}"
heartbeat_interval_s = 1.0
backoff_base_s = 0.05
backoff_cap_s = 0.5

[[devices]]
id = "{PRINTER}"
kind = "printer"
transport = "tcp"
host = "127.0.0.1"
port = {printer_port}
poll_interval_s = 0.2
status_timeout_s = 1.0
confirm_timeout_s = 10.0
"""


def _statuses(cloud: CloudProcess) -> list[tuple[str, str]]:
    if not cloud.healthy():
        return []
    events = cloud.all_events(STORE)
    return [
        (e["payload"]["state"], e["payload"]["condition"])
        for e in events
        if e["kind"] == "device.status" and e["device_id"] == PRINTER
    ]


@pytest.mark.parametrize("fault", ["power_off", "paper_runs_out_mid_job"])
def test_jobs_pending_across_a_kill_9_print_exactly_once(tmp_path: Path, fault: str) -> None:
    cloud = CloudProcess(tmp_path / "cloud.db", free_port(), tmp_path / "cloud.log")
    cloud.start()
    printer = _PrinterThread()
    state = tmp_path / "state"
    code = run_cli("cloud", "enroll-code", "--store", STORE, "--db", cloud.db_url).strip()
    run_cli("agent", "enroll", "--cloud", cloud.url, "--code", code, "--state-dir", str(state))
    config = tmp_path / "agent.toml"
    config.write_text(_agent_toml(state, cloud.url, printer.port))
    agent = AgentProcess(config, tmp_path / "agent.log")
    if fault == "power_off":
        printer.call(printer.emulator.power_off)
        held = ("offline", "disconnected")
    else:  # the first job's start marker goes out, then the printer finds no paper
        printer.run(lambda: setattr(printer.emulator.core, "paper_left", 0))
        held = ("degraded", "paper_out")
    try:
        agent.start()
        for job_id, n in zip(JOBS, range(len(JOBS)), strict=True):
            fields = {"title": f"COUPON {n}", "value": "10 CNY", "token": f"https://c.example/{n}"}
            asyncio.run(spool_template(state, PRINTER, job_id, "coupon", fields))
        wait_until(lambda: held in _statuses(cloud), 30, f"agent never reported {held}")
        wait_until(lambda: outbox_state(state / "outbox.db")["backlog"] == 0, 30, "no sync")
        assert printer.titles() == []
        # Killed with job 0's start marker in the printer (paper case) or nothing sent (power).
        first = "printing" if fault == "paper_runs_out_mid_job" else "queued"
        assert _job_states(state) == [first, "queued", "queued"]
        agent.kill9()

        agent.start()
        # The restarted agent reports the same condition again before anything can print.
        wait_until(lambda: _statuses(cloud).count(held) >= 2, 30, "restarted agent is silent")
        if fault == "power_off":
            printer.call(printer.emulator.power_on)
        else:
            printer.run(lambda: setattr(printer.emulator.core, "paper_left", None))
            printer.run(lambda: printer.emulator.set_status(paper_out=False, paper_near_end=False))
        wait_until(lambda: len(_completed(cloud)) >= len(JOBS), 60, "jobs did not all complete")
        wait_until(lambda: outbox_state(state / "outbox.db")["backlog"] == 0, 30, "no sync")
        assert agent.terminate() == 0, "agent did not stop cleanly on SIGTERM"
    finally:
        if agent.proc is not None:
            agent.kill9()
        titles = printer.titles()
        printer.close()

    assert titles == [f"COUPON {n}" for n in range(len(JOBS))]  # on paper once each, in order
    events = cloud.all_events(STORE)
    completed = Counter(e["payload"]["job_id"] for e in events if e["kind"] == "print.completed")
    assert completed == Counter(JOBS)  # exactly one print.completed per job
    assert [e for e in events if e["kind"] == "print.failed"] == []
    assert not any(e["payload"]["reprint"] for e in events if e["kind"] == "print.completed")
    seqs = sorted(e["seq"] for e in events)
    assert seqs == list(range(1, len(events) + 1)), "seq has gaps or repeats"
    cloud.stop()


def _job_states(state: Path) -> list[str]:
    with sqlite3.connect(f"file:{state / QUEUE_FILE}?mode=ro", uri=True, timeout=5) as conn:
        return [row[0] for row in conn.execute("SELECT state FROM jobs ORDER BY seq")]


def _completed(cloud: CloudProcess) -> list[dict[str, Any]]:
    if not cloud.healthy():
        return []
    return [e for e in cloud.all_events(STORE) if e["kind"] == "print.completed"]
