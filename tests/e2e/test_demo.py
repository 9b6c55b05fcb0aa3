"""`storeedge demo` as a newcomer runs it: it starts, survives its outages, syncs, and stops."""

import socket
import sqlite3
import subprocess
from pathlib import Path

from stack import STOREEDGE


def test_demo_runs_through_an_outage_and_syncs_what_it_captured(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *STOREEDGE, "demo", "--dir", str(tmp_path), "--port", "0", "--duration", "16",
            "--outage-every", "5", "--outage-for", "3",
        ],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "storeedge demo" in out
    assert "admin token" in out
    assert "cloud DOWN" in out
    assert "cloud UP again" in out
    assert "demo stopped" in out
    with sqlite3.connect(tmp_path / "cloud.db") as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
    assert kinds.get("scan", 0) > 0, kinds
    assert kinds.get("device.status", 0) > 0, kinds
    with sqlite3.connect(tmp_path / "cloud.db") as db:
        stores = {row[0] for row in db.execute("SELECT DISTINCT store_id FROM events")}
    assert stores == {"store-demo-001", "store-demo-002"}  # the neighbour store syncs too


def test_demo_on_a_busy_port_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*STOREEDGE, "demo", "--dir", str(tmp_path), "--port", str(port), "--duration", "5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port 0" in done.stderr
    assert "Traceback" not in done.stderr
