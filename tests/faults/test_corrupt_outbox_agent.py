"""The real agent finds its outbox destroyed: quarantines it, keeps capturing, and raises the
alert everywhere an operator looks: the log, `agent status`, and its heartbeat in the cloud."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from agent.outbox.quarantine import SEQ_EPOCH
from hardware.emulators.scanner import PtyScanner
from hardware.faults.stack import (
    AgentProc,
    free_port,
    outbox_state,
    run_cli,
    sqlite_cloud,
    wait_until,
)

STORE = "store-corrupt"


def _toml(state: Path, url: str, link: Path, page_port: int) -> str:
    return f"""
[agent]
state_dir = "{state}"
[cloud]
url = "{url}"
heartbeat_interval_s = 0.5
backoff_base_s = 0.05
backoff_cap_s = 0.5
[status_page]
port = {page_port}
[[devices]]
id = "scanner-till"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
"""


def test_a_destroyed_outbox_is_quarantined_alerted_and_capture_goes_on(tmp_path: Path) -> None:
    cloud = sqlite_cloud(tmp_path)
    cloud.start()
    state = tmp_path / "state"
    scanner = PtyScanner(tmp_path / "scanner.tty")
    config = tmp_path / "agent.toml"
    agent = AgentProc(config, tmp_path / "agent.log")
    outbox = state / "outbox.db"
    try:
        code = cloud.enroll_code(STORE)
        run_cli("agent", "enroll", "--cloud", cloud.urls[0], "--code", code,
                "--state-dir", str(state))  # fmt: skip
        config.write_text(_toml(state, cloud.urls[0], scanner.link, free_port()))
        agent.start()
        wait_until(lambda: outbox_state(outbox).next_seq > 1, 30, "agent never came up")
        for n in range(20):
            scanner.scan(f"BEFORE-{n:03d}")
        wait_until(lambda: cloud.count(STORE) >= 21, 30, "first scans never arrived")
        agent.kill9()
        conn = sqlite3.connect(outbox)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        with outbox.open("r+b") as f:
            f.write(b"\x00" * 100)  # the header: "file is not a database"
        agent.start()
        # Up again once the scanner's "connected" is in the fresh outbox, in a new seq epoch
        # (the destroyed header took the old counter with it).
        wait_until(lambda: outbox_state(outbox).next_seq > SEQ_EPOCH + 1, 30, "not up again")
        for n in range(20):
            scanner.scan(f"AFTER-{n:03d}")
        wait_until(
            lambda: sum(e["kind"] == "scan" for e in cloud.all_events(STORE)) >= 40,
            30,
            "capture did not go on after the quarantine",
        )

        def heartbeat_alerts() -> list[str]:
            agents = cloud.admin(f"/api/stores/{STORE}")["agents"]
            return [a for x in agents for a in (x["heartbeat"] or {}).get("alerts", [])]

        wait_until(lambda: bool(heartbeat_alerts()), 30, "the alert never reached the cloud")
        status = subprocess.run(
            [sys.executable, "-m", "agent.cli.main", "agent", "status", "--json",
             "--config", str(config)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert agent.terminate() == 0
        texts = [e["payload"]["text"] for e in cloud.all_events(STORE) if e["kind"] == "scan"]
    finally:
        if agent.running:
            agent.kill9()
        scanner.close()
        cloud.stop()
    assert sorted(texts) == sorted([f"BEFORE-{n:03d}" for n in range(20)] +
                                   [f"AFTER-{n:03d}" for n in range(20)])  # fmt: skip
    alerts = json.loads(status.stdout)["outbox"]["alerts"]
    assert len(alerts) == 1, alerts
    assert "outbox corrupt" in alerts[0]
    kept = list((state / "quarantine").glob("outbox-*.db"))
    assert len(kept) == 1
    assert kept[0].read_bytes()[:100] == b"\x00" * 100, "the forensic copy was changed"
    log = (tmp_path / "agent.log").read_text()
    assert "outbox corrupt" in log
