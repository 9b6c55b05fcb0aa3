"""bench/chaos: issue 8's long runs; each bounded in count and time, each stops by itself.

- kill: `--kills` random kill -9 points (agent and cloud) behind the faulty WAN (ChaosRun).
- outage: a 72-hour outage's backlog (`--outage-events`, occurred_at spread over 72 h) in the
  outbox; the agent comes up while the cloud is still unreachable, then drains it all through
  a WAN that still drops answers after commit, and is killed -9 twice on the way.
- disk_full: the state dir on a small tmpfs, the cloud down, a scanner scanning until the
  disk is full; then space returns and the link heals.
- corruption: the outbox destroyed (header) after a sync, and damaged (pages) with a backlog,
  each while the agent was down; it must quarantine, salvage and keep capturing.
- power_loss: `--power-copies` copies of a live outbox at random instants, torn tails.
- fuzz: `--fuzz` hostile inputs per parser (hardware/faults/hostile.py).

Every scenario ends in the invariant checker (lost 0, duplicates 0) and writes its counts.
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.outbox import Identity, Outbox
from agent.outbox.quarantine import QUARANTINE_DIR, history
from agent.outbox.quarantine import check as check_outbox
from bench.common import RESULTS, report
from hardware.emulators.scanner import EmulatorError, PtyScanner
from hardware.faults.chaos import ChaosRun, ChaosSettings
from hardware.faults.disk import DiskError, TmpfsDisk
from hardware.faults.hostile import fuzz
from hardware.faults.invariants import Acknowledged, AgentAccount, check
from hardware.faults.powerloss import check_copy, freeze_and_copy, tear
from hardware.faults.stack import (
    AgentProc,
    Cloud,
    outbox_state,
    run_cli,
    sqlite_cloud,
    wait_until,
)
from hardware.netfault import Fault, FaultPlan, ProxyThread, always
from protocol import ScanPayload

WRITER = Path(__file__).resolve().parent.parent / "tests" / "agent" / "outbox" / "crash_writer.py"
OUTAGE_HOURS = 72
AFTER_COMMIT = (Fault.ERROR_AFTER, Fault.DROP_AFTER, Fault.RESET_AFTER, Fault.TRUNCATE_AFTER)


class _Box:
    """One store for the scenarios: a cloud, the proxy, an enrolled agent and a pty scanner."""

    def __init__(self, workdir: Path, name: str, state: Path | None = None) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.store_id = f"store-{name}"
        self.cloud: Cloud = sqlite_cloud(self.workdir)
        self.cloud.start()
        self.proxy = ProxyThread(self.cloud.urls[0], always(Fault.PASS), slow_s=4.0)
        self.state = state or self.workdir / "state"
        code = self.cloud.enroll_code(self.store_id)
        run_cli("agent", "enroll", "--cloud", self.proxy.url, "--code", code,
                "--state-dir", str(self.state))  # fmt: skip
        creds = json.loads((self.state / "credentials.json").read_text())
        self.identity = Identity(creds["agent_id"], creds["store_id"])
        self.scanner = PtyScanner(self.workdir / "scanner.tty", write_timeout_s=1.0)
        config = self.workdir / "agent.toml"
        config.write_text(_agent_toml(self.state, self.proxy.url, self.scanner.link))
        self.agent = AgentProc(config, self.workdir / "agent.log")
        self.outbox = self.state / "outbox.db"
        self.acked = Acknowledged()
        self._seen = 0
        self._torn = False
        self.sent = 0

    def start_agent(self) -> None:
        before = outbox_state(self.outbox).next_seq
        self.agent.start()
        # The driver's first act on opening the port is a durable device.status.
        wait_until(lambda: outbox_state(self.outbox).next_seq > before, 60, "agent never came up")

    def scan(self, count: int, prefix: str) -> int:
        """Scan `count` codes (stop early if the agent stops reading); how many were written."""
        written = 0
        if self._torn:
            # A scan cut short when the line was full: end it, so it stays a fragment of
            # its own instead of swallowing the next code.
            self.scanner.send_raw(b"\r\n")
            self._torn = False
        for _ in range(count):
            try:
                self.scanner.scan(f"{prefix}-{self.sent:08d}")
            except EmulatorError:
                self._torn = True
                break
            self.sent += 1
            written += 1
            if written % 50 == 0:
                self.observe()
        self.observe()
        return written

    def observe(self) -> None:
        """Scans seen committed in the outbox are acknowledged (guarantee 1)."""
        try:
            conn = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute(
                    "SELECT seq, json_extract(body, '$.payload.text') FROM outbox "
                    "WHERE seq > ? AND kind = 'scan' ORDER BY seq",
                    (self._seen,),
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return
        for seq, text in rows:
            self._seen = max(self._seen, seq)
            if text and re.fullmatch(r"[A-Z]+-[0-9]{8}", text):
                self.acked.scans.append(text)

    def drain(self, timeout: float = 600) -> None:
        self.proxy.proxy.schedule = always(Fault.PASS)
        self.observe()
        wait_until(
            lambda: self.scanner.pending() == 0 and outbox_state(self.outbox).backlog == 0,
            timeout,
            f"backlog did not drain: {outbox_state(self.outbox)}",
        )
        self.observe()

    def verdict(self, seq_jumps: list[int] | None = None) -> dict[str, Any]:
        state = outbox_state(self.outbox)
        account = AgentAccount(
            self.identity.agent_id, state.losses, state.dead_letters, state.dead_kinds,
            state.backlog, seq_jumps or [],
        )  # fmt: skip
        events = self.cloud.all_events(self.store_id)
        return check(self.acked, events, [account]).summary()

    def close(self) -> None:
        for step in (
            lambda: self.agent.terminate() if self.agent.running else 0,
            self.proxy.close,
            self.scanner.close,
            self.cloud.stop,
        ):
            try:
                step()
            except Exception as exc:  # the others must still stop
                print(f"tear-down step failed: {exc!r}", file=sys.stderr)


def _agent_toml(state: Path, url: str, link: Path) -> str:
    return f"""
[agent]
state_dir = "{state}"

[cloud]
url = "{url}"
heartbeat_interval_s = 1.0
backoff_base_s = 0.05
backoff_cap_s = 1.0
request_timeout_s = 5.0

[status_page]
enabled = false

[[devices]]
id = "scanner-till"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
flood_max_per_s = 100000
flood_burst = 100000
"""


# -- scenarios -------------------------------------------------------------------------------


def kill_run(workdir: Path, kills: int, seed: int) -> dict[str, Any]:
    """`kills` random kill -9 points; the whole ChaosRun report."""
    started = time.monotonic()
    run = ChaosRun(workdir / "kill", ChaosSettings(kills=kills, seed=seed))
    (workdir / "kill").mkdir()
    summary = run.run().summary()
    summary["duration_s"] = round(time.monotonic() - started, 1)
    return summary


def _fill_backlog(path: Path, identity: Identity, events: int) -> None:
    async def fill() -> None:
        outbox = await Outbox.open(path, identity)
        start = datetime.now(UTC) - timedelta(hours=OUTAGE_HOURS)
        step = timedelta(hours=OUTAGE_HOURS) / events
        for first in range(0, events, 1000):
            await asyncio.gather(*(
                outbox.append("scanner-till", ScanPayload(raw_b64="QUJD", text=f"OUTAGE-{n:08d}"),
                              start + step * n)
                for n in range(first, min(events, first + 1000))
            ))  # fmt: skip
        await outbox.close()

    asyncio.run(fill())


def outage_run(workdir: Path, events: int, seed: int) -> dict[str, Any]:
    """A 72-hour outage's backlog drained through a lossy WAN and two kill -9s."""
    box = _Box(workdir, "outage")
    try:
        started = time.monotonic()
        _fill_backlog(box.outbox, box.identity, events)
        filled_s = time.monotonic() - started
        size_mb = box.outbox.stat().st_size / 1e6
        checked = time.monotonic()
        assert check_outbox(box.outbox) is None
        check_s = time.monotonic() - checked  # the integrity check every agent start pays
        box.proxy.proxy.schedule = always(Fault.ERROR_BEFORE)  # still down when the agent starts
        box.start_agent()
        time.sleep(3)
        # The link is back, but still drops 5 % of answers after the cloud committed them.
        box.proxy.proxy.schedule = FaultPlan(rate=0.05, faults=AFTER_COMMIT, seed=seed)
        drain_started = time.monotonic()
        kills = 0
        for fraction in (0.3, 0.7):
            wait_until(
                lambda f=fraction: box.cloud.count(box.store_id) >= events * f,  # type: ignore[misc]
                900, "drain stalled",
            )  # fmt: skip
            box.agent.kill9()
            kills += 1
            box.start_agent()
        box.drain(timeout=900)
        drain_s = time.monotonic() - drain_started
        faults = dict(box.proxy.injected)
        box.agent.terminate()
        held = _cloud_sql(box.cloud, box.identity.agent_id)
        state = outbox_state(box.outbox)
    finally:
        box.close()
    scans_held = held["scan_texts"]
    return {
        "backlog_events": events,
        "outbox_mb": round(size_mb, 1),
        "fill_s": round(filled_s, 1),
        "startup_quick_check_s": round(check_s, 2),
        "drain_s": round(drain_s, 1),
        "drain_events_per_s": round(events / drain_s),
        "agent_kills": kills,
        "proxy_faults": faults,
        "in_cloud": held["events"],
        "lost": events - scans_held,
        "duplicates": held["events"] - held["distinct_texts"] - held["non_scan"],
        "seq_gapless": held["seq_gapless"],
        "agent_losses": state.losses,
    }


def _cloud_sql(cloud: Cloud, agent_id: str) -> dict[str, Any]:
    """Exactly-once at a million rows, counted in the cloud's own SQLite file."""
    path = cloud.db_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        total, distinct_seq, low, high = conn.execute(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events "
            "WHERE agent_id = ?",
            (agent_id,),
        ).fetchone()
        scans, texts = conn.execute(
            "SELECT count(*), count(DISTINCT json_extract(body, '$.payload.text')) FROM events "
            "WHERE agent_id = ? AND kind = 'scan' AND json_extract(body, '$.payload.text') "
            "LIKE 'OUTAGE-%'",
            (agent_id,),
        ).fetchone()
    finally:
        conn.close()
    return {
        "events": total,
        "scan_texts": texts,
        "distinct_texts": texts,
        "non_scan": total - scans,
        "seq_gapless": distinct_seq == total and low == 1 and high == total,
    }


def disk_full_run(workdir: Path) -> dict[str, Any]:
    """Fill the outbox's disk while the cloud is down; space returns; all synced once."""
    disk = TmpfsDisk(workdir / "disk-full-state", "4m")
    disk.mount()
    box: _Box | None = None
    try:
        box = _Box(workdir, "disk_full", state=disk.path)
        box.proxy.proxy.schedule = always(Fault.ERROR_BEFORE)
        box.start_agent()
        written = 0
        stalled_at = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            n = box.scan(200, "DISK")
            written += n
            if n < 200:  # the agent stopped reading: the disk is full
                stalled_at = written
                break
        assert stalled_at is not None, "the disk never filled"
        time.sleep(2)
        box.observe()
        committed_when_full = len(box.acked.scans)
        alert = _last_heartbeat_alerts(box)
        disk.resize("64m")  # space returns
        box.scan(500, "DISK")
        box.drain(timeout=300)
        verdict = box.verdict()
        faults = dict(box.proxy.injected)
        # Unacknowledged scans waited in the serial line, so even those arrive.
        written_in_cloud = sum(
            1 for e in box.cloud.all_events(box.store_id)
            if e["kind"] == "scan" and e["payload"]["text"].startswith("DISK-")
        )  # fmt: skip
    finally:
        if box is not None:
            box.close()
        disk.unmount()
    return {
        "disk": "tmpfs 4 MiB, then 64 MiB",
        "scans_written": box.sent,
        "written_in_cloud": written_in_cloud,
        "committed_when_full": committed_when_full,
        "waiting_in_the_serial_line_when_full": stalled_at - committed_when_full,
        "alert_seen": alert,
        "proxy_faults": faults,
        "invariants": verdict,
    }


def _last_heartbeat_alerts(box: _Box) -> bool:
    """Whether the cloud got a heartbeat carrying a disk-full alert (heartbeats need no disk)."""
    box.proxy.proxy.schedule = always(Fault.PASS)
    try:
        wait_until(lambda: any("disk full" in a for a in _alerts(box)), 30, "no disk alert")
    except Exception:
        return False
    finally:
        box.proxy.proxy.schedule = always(Fault.ERROR_BEFORE)
    return True


def _alerts(box: _Box) -> list[str]:
    detail = box.cloud.admin(f"/api/stores/{box.store_id}")
    return [
        a for agent in detail["agents"] for a in (agent.get("heartbeat") or {}).get("alerts", [])
    ]


def corruption_run(workdir: Path) -> dict[str, Any]:
    """Header destroyed after a sync; pages damaged with a backlog. Quarantine and go on."""
    box = _Box(workdir, "corruption")
    rows: dict[str, Any] = {}
    try:
        # 1. Synced, then the file is destroyed while the agent is down.
        box.start_agent()
        box.scan(500, "CORRUPT")
        box.drain()
        box.agent.kill9()
        _checkpoint(box.outbox)  # else the WAL's copy of page 1 masks the damage (and heals it)
        with box.outbox.open("r+b") as f:
            f.write(os.urandom(4096))
        box.start_agent()
        box.scan(500, "CORRUPT")
        box.drain()
        after_header = history(box.state)
        # 2. A backlog (cloud down), then pages of it damaged while the agent is down.
        box.proxy.proxy.schedule = always(Fault.ERROR_BEFORE)
        box.scan(2000, "CORRUPT")
        time.sleep(1)
        box.agent.kill9()
        box.observe()
        backlog_before = outbox_state(box.outbox).backlog
        damaged = _damage_pages(box.outbox, pages=3)
        box.start_agent()
        box.scan(500, "CORRUPT")
        box.drain()
        records = history(box.state)
        verdict = box.verdict([r.next_seq for r in records if r.last_seq is None])
        counted = outbox_state(box.outbox).losses.get("outbox_corrupt", 0)
        rows = {
            "quarantined_files": len(list((box.state / QUARANTINE_DIR).glob("outbox-*.db"))),
            "header_destroyed_salvaged": after_header[0].salvaged_events if after_header else None,
            "backlog_before_damage": backlog_before,
            "pages_damaged": damaged,
            "salvaged_events": records[-1].salvaged_events,
            "destroyed_counted_as_outbox_corrupt": counted,
            # Acknowledged events missing from the cloud that the damage does not explain.
            "lost_beyond_the_damage": verdict["lost"] - counted,
            "invariants": verdict,
        }
    finally:
        box.close()
    return rows


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _damage_pages(path: Path, pages: int) -> int:
    _checkpoint(path)
    conn = sqlite3.connect(path)
    leaves = [
        p
        for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY pageno"
        )
    ]
    conn.close()  # fmt: skip
    chosen = random.Random(5).sample(leaves[1:-1], min(pages, max(0, len(leaves) - 2)))
    with path.open("r+b") as f:
        for page in chosen:
            f.seek((page - 1) * 4096)
            f.write(b"\xa5" * 4096)
    return len(chosen)


def power_loss_run(workdir: Path, copies: int, seed: int) -> dict[str, Any]:
    """Copies of a live outbox at random instants: every one opens and holds a prefix."""
    db = workdir / "power" / "outbox.db"
    db.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked: set[int] = set()
    lock = threading.Lock()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                acked.add(int(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rng = random.Random(seed)
    bad, torn, held = [], 0, 0
    try:
        wait_until(lambda: bool(acked), 30, "writer never wrote")
        for n in range(copies):
            time.sleep(rng.uniform(0.0, 0.2))
            dest = db.with_name(f"copy-{n % 4}.db")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{dest}{suffix}").unlink(missing_ok=True)
            then = freeze_and_copy(proc.pid, db, dest, lambda: _locked_copy(acked, lock))
            verdict = check_copy(dest, then, tear(dest, rng))
            torn += verdict.torn_bytes > 0
            held = max(held, verdict.held)
            if not (verdict.opens and verdict.integrity == "ok" and verdict.prefix
                    and verdict.missing_acknowledged == 0):  # fmt: skip
                bad.append(str(verdict))
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
    return {"copies": copies, "with_torn_tail": torn, "largest_copy_events": held,
            "acknowledged": len(acked), "bad_copies": len(bad), "examples": bad[:3]}  # fmt: skip


def _locked_copy(acked: set[int], lock: threading.Lock) -> set[int]:
    with lock:
        return set(acked)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios (all by default) and write bench/results/chaos.json."""
    parser = argparse.ArgumentParser(prog="bench.chaos")
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--outage-events", type=int, default=1_000_000)
    parser.add_argument("--power-copies", type=int, default=300)
    parser.add_argument("--fuzz", type=int, default=5000, help="inputs per parser")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=["kill", "outage", "disk_full", "corruption", "power_loss", "fuzz"],
    )
    args = parser.parse_args(argv)  # fmt: skip
    chosen = set(args.only or ["kill", "outage", "disk_full", "corruption", "power_loss", "fuzz"])
    results: dict[str, Any] = {}
    previous = RESULTS / "chaos.json"
    if args.only and previous.exists():
        # Re-running some scenarios keeps the others' last figures.
        results.update(json.loads(previous.read_text()).get("scenarios", {}))
    workdir = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    try:
        if "fuzz" in chosen:
            started = time.monotonic()
            fuzzed = fuzz(args.fuzz, args.seed)
            results["fuzz"] = {"inputs": fuzzed.total, "per_parser": dict(fuzzed.tried),
                               "crashes": sum(map(len, fuzzed.failures.values())),
                               "examples": {k: v[:2] for k, v in fuzzed.failures.items()},
                               "duration_s": round(time.monotonic() - started, 1)}  # fmt: skip
        if "power_loss" in chosen:
            results["power_loss"] = power_loss_run(workdir, args.power_copies, args.seed)
        if "corruption" in chosen:
            results["corruption"] = corruption_run(workdir)
        if "disk_full" in chosen:
            try:
                results["disk_full"] = disk_full_run(workdir)
            except DiskError as exc:
                results["disk_full"] = {"skipped": f"cannot mount a tmpfs: {exc}"}
        if "outage" in chosen:
            results["outage"] = outage_run(workdir, args.outage_events, args.seed)
        if "kill" in chosen:
            results["kill"] = kill_run(workdir, args.kills, args.seed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [_row(name, data) for name, data in results.items()]
    report("chaos", "bench/chaos — faults injected, invariants after", rows, {"scenarios": results})
    return results


def _row(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """One table row per scenario: what was injected, what was at stake, lost, duplicates."""
    inv = data.get("invariants", {})
    if name == "kill":
        return {"what": f"kill -9 ×{data['kills']} (agent {data['agent_kills']}, cloud "
                f"{data['cloud_kills']}) + WAN faults", "faults": data["kills"] + data[
                "proxy_faults_total"], "at_stake": inv.get("acknowledged"), "lost": inv.get("lost"),
                "duplicates": inv.get("duplicates"), "seconds": data["duration_s"]}  # fmt: skip
    if name == "outage":
        faults = sum(data["proxy_faults"].values()) + data["agent_kills"]
        return {"what": f"{OUTAGE_HOURS} h outage backlog drained "
                f"({data['drain_events_per_s']:,} ev/s)", "faults": faults,
                "at_stake": data["backlog_events"], "lost": data["lost"],
                "duplicates": data["duplicates"], "seconds": data["drain_s"]}  # fmt: skip
    if name == "power_loss":
        return {"what": "power-loss copies (torn WAL tails)", "faults": data["copies"],
                "at_stake": data["acknowledged"], "lost": data["bad_copies"],
                "duplicates": 0, "seconds": ""}  # fmt: skip
    if name == "fuzz":
        return {"what": "hostile inputs to 11 parsers", "faults": data["inputs"],
                "at_stake": "", "lost": "", "duplicates": "", "crashes": data["crashes"],
                "seconds": data["duration_s"]}  # fmt: skip
    if "skipped" in data:
        return {"what": name, "faults": "skipped: " + data["skipped"]}
    if name == "corruption":
        return {"what": f"outbox header destroyed, then {data['pages_damaged']} backlog pages "
                f"({data['destroyed_counted_as_outbox_corrupt']} events on them, counted)",
                "faults": data["pages_damaged"] + 1, "at_stake": inv.get("acknowledged"),
                "lost": data["lost_beyond_the_damage"], "duplicates": inv.get("duplicates"),
                "seconds": ""}  # fmt: skip
    return {"what": "disk full (tmpfs), then space returns", "faults": 1,
            "at_stake": inv.get("acknowledged"), "lost": inv.get("lost"),
            "duplicates": inv.get("duplicates"), "seconds": ""}  # fmt: skip


if __name__ == "__main__":
    main()
