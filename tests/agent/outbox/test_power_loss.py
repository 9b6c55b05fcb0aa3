"""Power loss at random instants: every copy opens, holds a prefix, and all it acknowledged."""

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from hardware.faults.powerloss import check_copy, freeze_and_copy, last_commit_end, tear

WRITER = Path(__file__).with_name("crash_writer.py")
COPIES = int(os.environ.get("STOREEDGE_POWER_LOSS_COPIES", "25"))


def test_copies_at_random_instants_hold_a_prefix_with_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged: set[int] = set()
    lock = threading.Lock()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                acknowledged.add(int(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rng = random.Random(20261202)
    verdicts = []
    try:
        while not acknowledged:
            time.sleep(0.01)
        for n in range(COPIES):
            time.sleep(rng.uniform(0.0, 0.1))
            dest = tmp_path / f"copy-{n}.db"
            acked_then = freeze_and_copy(proc.pid, db, dest, lambda: _copy(acknowledged, lock))
            torn = tear(dest, rng)
            verdicts.append((check_copy(dest, acked_then, torn), len(acked_then)))
    finally:
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
    for verdict, acked in verdicts:
        assert verdict.opens, verdict
        assert verdict.integrity == "ok", verdict
        assert verdict.prefix, verdict
        assert verdict.missing_acknowledged == 0, (verdict, acked)
        assert verdict.held >= acked
    assert sum(v.torn_bytes > 0 for v, _ in verdicts) > COPIES // 3, "the WAL tail was never torn"


def _copy(acknowledged: set[int], lock: threading.Lock) -> set[int]:
    with lock:
        return set(acknowledged)


def test_last_commit_end_finds_the_commit_frames() -> None:
    page = 512
    header = b"\x37\x7f\x06\x82" + b"\x00" * 4 + page.to_bytes(4, "big") + b"\x00" * 20

    def frame(commit: int) -> bytes:
        return b"\x00" * 4 + commit.to_bytes(4, "big") + b"\x00" * 16 + b"\xee" * page

    wal = header + frame(0) + frame(3) + frame(0) + frame(0)[:100]
    assert last_commit_end(wal) == 32 + 2 * (24 + page)
    assert last_commit_end(header + frame(0)) == 32
    assert last_commit_end(b"") == 0
