"""Issue 2's proof: 2,000 scans through outages, 5xx, slow and dropped links, and a kill -9.

Everything is real: the cloud and the agent are `storeedge` processes, the scanner is a pty,
and a fault proxy on loopback sits between them. Afterwards the cloud must hold exactly the
2,000 scans, each once, with a gap-free seq, and the agent's outbox must be empty.
"""

import asyncio
import signal
import threading
from collections import Counter
from pathlib import Path

from stack import AgentProcess, CloudProcess, free_port, outbox_state, run_cli, wait_until

from hardware.emulators.scanner import PtyScanner
from hardware.netfault import Fault, FaultPlan, FaultProxy

SCANS = 2000
STORE = "store-e2e"


def _agent_toml(state: Path, cloud_url: str, link: Path) -> str:
    return f"""
[agent]
state_dir = "{state}"
log_level = "INFO"

[cloud]
url = "{cloud_url}"
batch_max_events = 25
heartbeat_interval_s = 1.0
backoff_base_s = 0.05
backoff_cap_s = 0.5
request_timeout_s = 3.0

[[devices]]
id = "scanner-front"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
# The test scans far faster than a person; the flood guard is tested on its own.
flood_max_per_s = 100000
flood_burst = 100000
"""


class _ProxyThread:
    """The fault proxy on its own event loop, so the test body can stay synchronous."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.proxy = FaultProxy(upstream, plan, slow_s=1.0, retry_after_s=1)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_two_thousand_scans_arrive_exactly_once_through_every_fault(tmp_path: Path) -> None:
    cloud = CloudProcess(tmp_path / "cloud.db", free_port(), tmp_path / "cloud.log")
    cloud.start()
    plan = FaultPlan(
        rate=0.35,
        faults=(
            Fault.ERROR_BEFORE,
            Fault.ERROR_AFTER,
            Fault.SLOW,
            Fault.DROP_BEFORE,
            Fault.DROP_AFTER,
            Fault.THROTTLE,
        ),
        seed=7,
    )
    proxy = _ProxyThread(cloud.url, plan)
    state = tmp_path / "state"
    code = run_cli("cloud", "enroll-code", "--store", STORE, "--db", cloud.db_url).strip()
    run_cli("agent", "enroll", "--cloud", proxy.url, "--code", code, "--state-dir", str(state))
    config = tmp_path / "agent.toml"
    link = tmp_path / "scanner"
    scanner = PtyScanner(link)
    config.write_text(_agent_toml(state, proxy.url, link))
    outbox = state / "outbox.db"
    agent = AgentProcess(config, tmp_path / "agent.log")
    sent: list[str] = []

    def start_agent_and_wait_for_port() -> None:
        before = outbox_state(outbox)["next_seq"]
        agent.start()
        # The driver's first act on opening the port is a durable device.status "connected".
        wait_until(lambda: outbox_state(outbox)["next_seq"] > before, 20, "agent never connected")

    def scan(count: int) -> None:
        for _ in range(count):
            code = f"E2E-{len(sent):05d}"
            scanner.scan(code)
            sent.append(code)
        # Every byte read by the agent means every earlier frame was made durable.
        assert scanner.drain(10), "agent stopped reading the scanner"

    try:
        start_agent_and_wait_for_port()
        scan(400)
        cloud.stop(signal.SIGKILL)  # outage 1: the cloud dies
        scan(400)
        cloud.start()
        wait_until(lambda: cloud_count(cloud) > 450, 60, "sync did not resume after outage 1")
        cloud.stop(signal.SIGTERM)  # outage 2: a clean stop
        scan(400)
        cloud.start()
        # kill -9 the agent mid-sync: some of the backlog is in the cloud, some is not.
        wait_until(lambda: cloud_count(cloud) > 900, 60, "sync did not resume after outage 2")
        assert outbox_state(outbox)["backlog"] > 0, "backlog drained before the kill; test is moot"
        agent.kill9()
        start_agent_and_wait_for_port()
        scan(400)
        cloud.stop(signal.SIGKILL)  # outage 3
        cloud.start()
        scan(400)
        wait_until(
            lambda: cloud_count(cloud) >= SCANS and outbox_state(outbox)["backlog"] == 0,
            120,
            f"not everything arrived: cloud {cloud_count(cloud)}, outbox {outbox_state(outbox)}",
        )
        assert agent.terminate() == 0, "agent did not stop cleanly on SIGTERM"
    finally:
        if agent.proc is not None:
            agent.kill9()
        proxy.close()
        scanner.close()

    events = cloud.all_events(STORE)
    scans = [e for e in events if e["kind"] == "scan"]
    texts = Counter(e["payload"]["text"] for e in scans)
    assert len(scans) == SCANS
    assert set(texts) == set(sent)
    assert max(texts.values()) == 1, "an event was stored twice"
    seqs = sorted(e["seq"] for e in events)
    assert seqs == list(range(1, len(events) + 1)), "seq has gaps or repeats"
    assert len({e["event_id"] for e in events}) == len(events)
    final = outbox_state(outbox)
    assert final["backlog"] == 0
    assert final["dead"] == 0
    assert final["losses"] == {}
    injected = proxy.proxy.injected
    assert injected["error_after"] > 0, injected
    assert injected["drop_after"] > 0, injected
    cloud.stop()


def cloud_count(cloud: CloudProcess) -> int:
    if not cloud.healthy():
        return -1
    count: int = cloud.admin(f"/api/events/count?store_id={STORE}&kind=scan")["count"]
    return count
