"""kill -9 at random points never leaves a ledger row without its coupon.redeemed event, or the
reverse, and never lets one coupon be redeemed twice in the store."""

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REDEEMER = Path(__file__).with_name("crash_redeemer.py")
KILLS = 8


def test_kill_9_keeps_ledger_and_events_in_step(tmp_path: Path) -> None:
    rng = random.Random(4)
    acknowledged: dict[int, str] = {}
    root = Path(__file__).resolve().parents[3]
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(REDEEMER), str(tmp_path)],
                                stdout=subprocess.PIPE, text=True, cwd=root)  # fmt: skip
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, "redeemer died before its first outcome"
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in (first + out).splitlines():
            coupon_id, status, redemption_id = line.split()
            if status == "redeemed":
                assert int(coupon_id) not in acknowledged, "two redemptions acknowledged"
                acknowledged[int(coupon_id)] = redemption_id
    conn = sqlite3.connect(tmp_path / "outbox.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ledger = dict(conn.execute("SELECT coupon_id, redemption_id FROM coupon_ledger"))
    events = [json.loads(body) for (body,) in conn.execute("SELECT body FROM outbox")]
    redeemed = [e["payload"] for e in events if e["kind"] == "coupon.redeemed"]
    by_coupon = Counter(p["coupon_id"] for p in redeemed)
    assert max(by_coupon.values()) == 1, "a coupon was redeemed twice in the store"
    assert ledger == {p["coupon_id"]: p["redemption_id"] for p in redeemed}
    # Every acknowledged redemption is durable, ledger and event alike.
    assert all(ledger.get(cid) == rid for cid, rid in acknowledged.items())
    assert len(acknowledged) > KILLS
