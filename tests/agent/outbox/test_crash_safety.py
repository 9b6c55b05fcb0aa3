"""Guarantee 1: kill -9 at random points never loses an event reported durable."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = int(os.environ.get("STOREEDGE_CRASH_KILLS", "30"))


def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    acknowledged: list[int] = []
    rng = random.Random(20261122)
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is writing
        assert first, "writer died before its first durable event"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acknowledged += [int(line) for line in (first + out).split()]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = [seq for (seq,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    # seq is gap-free: nothing was committed without being numbered, nothing numbered twice.
    assert stored == list(range(1, len(stored) + 1))
    event_ids = [e for (e,) in conn.execute("SELECT event_id FROM outbox")]
    assert len(set(event_ids)) == len(event_ids)
    assert len(acknowledged) > KILLS
