"""kill -9 between an outcome's capture and mark_reported: still one print.* event, no seq gap."""

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from crash_reporter import DEVICE, IDENTITY, counters

from agent.devices.printer.jobs import JobLedger
from agent.devices.printer.queue import QUEUE_FILE, JobState
from agent.outbox import Outbox

HELPER = Path(__file__).with_name("crash_reporter.py")
ROOT = Path(__file__).parents[4]


def outcome_events(path: Path) -> list[tuple[int, dict[str, object]]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT seq, body FROM outbox ORDER BY seq").fetchall()
    return [(seq, json.loads(body)) for seq, body in found]


async def test_crash_between_capture_and_mark_reported_reports_the_job_once(
    tmp_path: Path,
) -> None:
    crashed = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path)], cwd=ROOT, capture_output=True, timeout=60
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    before = outcome_events(tmp_path / "outbox.db")
    assert [event["kind"] for _, event in before] == ["print.completed"]  # captured, then killed

    outbox = await Outbox.open(tmp_path / "outbox.db", IDENTITY)  # the agent starts again
    ledger = JobLedger(DEVICE, tmp_path / QUEUE_FILE, outbox, counters(), 1 << 20)
    try:
        await ledger.recover()  # re-reports the unmarked outcome: a no-op in the outbox
        stats = await outbox.stats()
        queue = await ledger.queue()
        job = await queue.get("job-0")
        assert await queue.recover() == []  # marked reported this time
    finally:
        await ledger.close()
        await outbox.close()
    after = outcome_events(tmp_path / "outbox.db")
    assert after == before  # the same event_id and seq, nothing new
    assert stats.next_seq == 2  # gap-free: the re-capture used no seq
    assert job is not None
    assert (job.state, job.reported) == (JobState.DONE, True)
