"""The kill -9 run: a real agent and cloud behind the fault proxy, killed at random instants.

Each round spawns the agent (or keeps it) and, while a pty scanner and the till (the POS
endpoint) feed it, kills the agent or a cloud replica with SIGKILL at a random point; the
proxy meanwhile runs its fault schedule. At the end the link heals, the backlog drains and
the invariant checker holds the cloud against what the devices were told.
"""

import asyncio
import http.client
import json
import logging
import random
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import EmulatorError, PtyScanner
from hardware.faults.invariants import (
    Acknowledged,
    AgentAccount,
    Verdict,
    check,
    is_marked_copy,
    voucher_refs,
)
from hardware.faults.stack import (
    AgentProc,
    Cloud,
    CloudFactory,
    StackError,
    free_port,
    outbox_state,
    run_cli,
    sqlite_cloud,
    wait_until,
)
from hardware.netfault import Fault, FaultPlan, Phase, ProxyThread, TimedSchedule, always

POS_TOKEN = "chaos-pos-token-0123456789"
ISSUE_BATCH = 5000  # coupons per admin request (the API allows 10,000)
# Request faults of the "bad WAN" phases: every kind the proxy can do except black-holing,
# which has a phase of its own.
WAN_FAULTS = (
    Fault.ERROR_BEFORE,
    Fault.ERROR_AFTER,
    Fault.SLOW,
    Fault.DELAY,
    Fault.DROP_BEFORE,
    Fault.DROP_AFTER,
    Fault.RESET,
    Fault.RESET_AFTER,
    Fault.TRUNCATE_AFTER,
    Fault.THROTTLE,
)
log = logging.getLogger(__name__)
_SCAN_TEXT = re.compile(r"CHAOS-[0-9]{7}")
_T = TypeVar("_T")


@dataclass
class ChaosSettings:
    """How many kills, how the time between them is drawn, and what else goes wrong."""

    kills: int = 50
    seed: int = 8
    cloud_kill_share: float = 0.15  # of the kills, this share hits a cloud replica
    max_kill_delay_s: float = 2.5  # agent kills land uniformly in (0.1 s, this) after spawn
    fault_rate: float = 0.3  # of requests in the bad-WAN phases
    redemptions_per_round: int = 3
    drain_timeout_s: float = 180.0
    store_id: str = "store-chaos"


@dataclass
class ChaosReport:
    """What was injected, what was acknowledged, and the checker's verdict."""

    settings: ChaosSettings
    verdict: Verdict
    agent_kills: int = 0
    cloud_kills: int = 0
    kills_during_startup: int = 0
    proxy_faults: dict[str, int] = field(default_factory=dict)
    proxy_requests: int = 0
    scans_sent: int = 0
    redemptions_sent: int = 0
    vouchers_printed: int = 0
    clean_exit_code: int | None = None
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Plain JSON for tables and bench results."""
        return {
            "kills": self.agent_kills + self.cloud_kills,
            "agent_kills": self.agent_kills,
            "cloud_kills": self.cloud_kills,
            "kills_during_startup": self.kills_during_startup,
            "proxy_requests": self.proxy_requests,
            "proxy_faults": dict(self.proxy_faults),
            "proxy_faults_total": sum(self.proxy_faults.values()),
            "scans_sent": self.scans_sent,
            "redemptions_sent": self.redemptions_sent,
            "vouchers_printed": self.vouchers_printed,
            "clean_exit_code": self.clean_exit_code,
            "duration_s": round(self.duration_s, 1),
            "invariants": self.verdict.summary(),
        }


def wan_schedule(rate: float, seed: int) -> TimedSchedule:
    """The proxy's day: bad WAN, a black hole, resets, a clean spell; over and over."""
    return TimedSchedule(
        [
            Phase(6.0, FaultPlan(rate=rate, faults=WAN_FAULTS, seed=seed)),
            Phase(2.0, always(Fault.BLACKHOLE)),
            Phase(4.0, FaultPlan(rate=rate, faults=WAN_FAULTS, seed=seed + 1)),
            Phase(1.0, always(Fault.RESET)),
            Phase(3.0, always(Fault.PASS)),
        ],
        repeat=True,
    )


class _LoopThread:
    """An event loop in a daemon thread, for the emulators the run drives synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 10) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ChaosRun:
    """One store, one agent, one cloud (from `cloud_factory`), `settings.kills` kill points."""

    def __init__(
        self,
        workdir: Path,
        settings: ChaosSettings | None = None,
        cloud_factory: CloudFactory = sqlite_cloud,
    ) -> None:
        self.workdir = workdir
        self.settings = settings or ChaosSettings()
        self.rng = random.Random(self.settings.seed)
        self.cloud: Cloud = cloud_factory(workdir)
        self.acked = Acknowledged()
        self._tokens: list[str] = []
        self._scan_no = 0
        self._redeem_no = 0
        self._killed = threading.Event()
        # The last scan written, with the agent incarnation that was running then.
        self._seen_seq = 0  # the outbox rows already looked at

    def run(self) -> ChaosReport:
        """Run every round, heal, drain, check; always tears the stack down."""
        started = time.monotonic()
        s = self.settings
        self.cloud.start()
        proxy = ProxyThread(
            self.cloud.urls[0], wan_schedule(s.fault_rate, s.seed), slow_s=4.0, delay_s=0.3,
            upstreams=self.cloud.urls,
        )  # fmt: skip
        emulators = _LoopThread()
        printer = PrinterEmulator()
        scanner = PtyScanner(self.workdir / "scanner.tty", write_timeout_s=2.0)
        report = ChaosReport(s, Verdict())
        agent: AgentProc | None = None
        try:
            printer_port = emulators.run(printer.start_tcp())
            agent = self._enroll(proxy.url, scanner, printer_port)
            self._issue_coupons(s.kills * s.redemptions_per_round + 10)
            self._first_start(agent)
            for _ in range(s.kills):
                if self.rng.random() < s.cloud_kill_share:
                    self._cloud_round(agent, scanner)
                    report.cloud_kills += 1
                else:
                    report.kills_during_startup += self._agent_round(agent, scanner)
                    report.agent_kills += 1
            proxy.proxy.schedule = always(Fault.PASS)  # heal the link
            report.clean_exit_code = self._drain(agent, scanner)
        finally:
            # Each step on its own: one failing must not leave the others' processes behind.
            steps = [
                lambda: agent.kill9() if agent is not None and agent.running else None,
                proxy.close,
                scanner.close,
                lambda: emulators.run(printer.close()),
                emulators.close,
                self.cloud.stop,
            ]
            for step in steps:
                try:
                    step()
                except Exception:
                    log.exception("chaos run tear-down step failed")
        report.proxy_faults = dict(proxy.injected)
        report.proxy_requests = proxy.proxy.requests
        report.scans_sent = self._scan_no
        report.redemptions_sent = self._redeem_no
        receipts = printer.receipts
        originals = [r for r in receipts if not is_marked_copy(r.lines)]
        copies = [r for r in receipts if is_marked_copy(r.lines)]
        printed = voucher_refs(qr.data for r in originals for qr in r.qr_codes)
        reprinted = voucher_refs(qr.data for r in copies for qr in r.qr_codes)
        report.vouchers_printed = len(printed)
        report.verdict = self._check(printed, reprinted)
        report.duration_s = time.monotonic() - started
        return report

    # -- set-up ---------------------------------------------------------------------------

    def _enroll(self, proxy_url: str, scanner: PtyScanner, printer_port: int) -> AgentProc:
        state = self.workdir / "state"
        self.state_dir = state
        code = self.cloud.enroll_code(self.settings.store_id)
        run_cli("agent", "enroll", "--cloud", proxy_url, "--code", code, "--state-dir", str(state))
        self.agent_id = json.loads((state / "credentials.json").read_text())["agent_id"]
        self.pos_port = free_port()
        config = self.workdir / "agent.toml"
        config.write_text(agent_toml(state, proxy_url, self.pos_port, scanner.link, printer_port))
        return AgentProc(config, self.workdir / "agent.log")

    def _issue_coupons(self, count: int) -> None:
        now = datetime.now(UTC)
        campaign = self.cloud.admin("/api/campaigns", {
            "name": "Chaos", "currency": "EUR", "max_offline_value": 10**9,
            "valid_from": (now - timedelta(hours=1)).isoformat(),
            "valid_to": (now + timedelta(days=7)).isoformat(),
        })  # fmt: skip
        path = f"/api/campaigns/{campaign['campaign_id']}/coupons"
        while count > 0:
            batch = min(count, ISSUE_BATCH)
            issued = self.cloud.admin(path, {"count": batch, "value": 500}, timeout=120)
            self._tokens += [c["token"] for c in issued["coupons"]]
            count -= batch

    def _first_start(self, agent: AgentProc) -> None:
        agent.start()
        saved = self.state_dir / "business_config.json"
        wait_until(
            lambda: saved.exists() and '"campaigns":[]' not in saved.read_text() and self._up(),
            60,
            "the agent never got its business config",
        )

    # -- rounds ---------------------------------------------------------------------------

    def _agent_round(self, agent: AgentProc, scanner: PtyScanner) -> int:
        """Spawn the agent, kill it at a random instant; 1 if it died before it was up."""
        if not agent.running:
            agent.start()
        self._killed.clear()
        delay = self.rng.uniform(0.1, self.settings.max_kill_delay_s)
        timer = threading.Timer(delay, self._kill_agent, (agent,))
        timer.start()
        was_up = False
        while not self._killed.is_set():
            if not self._up():
                time.sleep(0.02)
                continue
            was_up = True
            self._work(scanner)
        timer.join()
        return 0 if was_up else 1

    def _cloud_round(self, agent: AgentProc, scanner: PtyScanner) -> None:
        """Kill one cloud replica mid-work and bring it back; the agent keeps running."""
        if not agent.running:
            agent.start()
        wait_until(self._up, 30, "agent did not come up for a cloud round")
        replica = self.rng.choice(self.cloud.replicas)
        self._killed.clear()
        timer = threading.Timer(self.rng.uniform(0.05, 1.0), self._kill_replica, (replica,))
        timer.start()
        while not self._killed.is_set():
            self._work(scanner)
        timer.join()

    def _kill_agent(self, agent: AgentProc) -> None:
        agent.kill9()
        self._killed.set()

    def _kill_replica(self, replica: Any) -> None:
        replica.kill9()
        time.sleep(self.rng.uniform(0.0, 0.5))
        replica.start()
        self._killed.set()

    def _work(self, scanner: PtyScanner) -> None:
        """One device action: a scan at the pty, or a redemption at the till."""
        if self.rng.random() < 0.7 or not self._tokens:
            self._scan(scanner)
        else:
            self._redeem(self._tokens.pop())

    def _scan(self, scanner: PtyScanner) -> None:
        text = f"CHAOS-{self._scan_no:07d}"
        self._scan_no += 1
        try:
            scanner.scan(text)
        except EmulatorError:
            return  # nobody reading and the pty buffer full: never taken
        # A serial scanner gets no answer, so what counts as acknowledged is what the agent
        # committed, seen from outside (guarantee 1: committed is never lost). The pty's
        # "drained" cannot tell: the kernel moves pty bytes to the reader asynchronously,
        # so FIONREAD can read 0 before the frame even arrived.
        scanner.drain(0.2)
        self._observe_commits()

    def _observe_commits(self) -> None:
        try:
            conn = sqlite3.connect(f"file:{self.state_dir / 'outbox.db'}?mode=ro", uri=True)
        except sqlite3.Error:
            return
        try:
            rows = conn.execute(
                "SELECT seq, body FROM outbox WHERE seq > ? AND kind = 'scan' ORDER BY seq",
                (self._seen_seq,),
            ).fetchall()
        except sqlite3.Error:
            return  # the agent is creating it
        finally:
            conn.close()
        for seq, body in rows:
            self._seen_seq = seq
            text = json.loads(body)["payload"]["text"]
            if _SCAN_TEXT.fullmatch(text):  # not a fragment of a frame torn by a kill
                self.acked.scans.append(text)

    def _redeem(self, token: str) -> None:
        self._redeem_no += 1
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.pos_port}/v1/coupons/redeem",
            data=json.dumps({"token": token, "pos_ref": "chaos"}).encode(),
            headers={"Authorization": f"Bearer {POS_TOKEN}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            return  # refused, killed mid-answer: the till was told nothing
        if answer.get("status") == "redeemed":
            self.acked.redemptions.append(answer["redemption_id"])

    def _up(self) -> bool:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.pos_port}/healthz",
            headers={"Authorization": f"Bearer {POS_TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):
            return False

    # -- the end --------------------------------------------------------------------------

    def _drain(self, agent: AgentProc, scanner: PtyScanner) -> int:
        """Everything the devices sent is read and synced; then a clean SIGTERM."""
        self.cloud.start()
        if not agent.running:
            agent.start()
        wait_until(self._up, 30, "agent did not come up for the drain")
        self._scan(scanner)
        outbox = self.state_dir / "outbox.db"
        wait_until(
            lambda: scanner.pending() == 0 and outbox_state(outbox).backlog == 0,
            self.settings.drain_timeout_s,
            f"backlog did not drain: {outbox_state(outbox)}",
        )
        return agent.terminate()

    def _check(self, printed: list[str], copies: list[str]) -> Verdict:
        state = outbox_state(self.state_dir / "outbox.db")
        account = AgentAccount(
            self.agent_id,
            state.losses,
            dead_letters=state.dead_letters,
            dead_kinds=state.dead_kinds,
            backlog=state.backlog,
        )
        try:
            self.cloud.start()
            events = self.cloud.all_events(self.settings.store_id)
        finally:
            self.cloud.stop()
        return check(self.acked, events, [account], printed, copies)


def agent_toml(state: Path, cloud_url: str, pos_port: int, link: Path, printer_port: int) -> str:
    """The chaos agent: a pty scanner, a LAN printer for vouchers, the till's endpoint."""
    return f"""
[agent]
state_dir = "{state}"
log_level = "INFO"

[cloud]
url = "{cloud_url}"
batch_max_events = 50
heartbeat_interval_s = 1.0
backoff_base_s = 0.05
backoff_cap_s = 0.5
request_timeout_s = 3.0

[status_page]
enabled = false

[coupons]
config_poll_interval_s = 2
voucher_printer = "printer-till"

[pos]
host = "127.0.0.1"
port = {pos_port}
token = "{POS_TOKEN}"

[[devices]]
id = "scanner-till"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
flood_max_per_s = 100000
flood_burst = 100000

[[devices]]
id = "printer-till"
kind = "printer"
transport = "tcp"
host = "127.0.0.1"
port = {printer_port}
poll_interval_s = 1.0
"""


def fault_counts(reports: list[ChaosReport]) -> Counter[str]:
    """Faults of several runs added up by name."""
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.proxy_faults)
    return total


__all__ = ["ChaosReport", "ChaosRun", "ChaosSettings", "StackError", "agent_toml", "wan_schedule"]
