"""Crash helper: reports a finished job, then SIGKILLs itself before the job is marked reported."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from agent.devices.printer.jobs import JobLedger
from agent.devices.printer.queue import QUEUE_FILE
from agent.outbox import Identity, Outbox

IDENTITY = Identity("agent-crash", "store-crash")
DEVICE = "printer-till"


def counters() -> dict[str, int]:
    return dict.fromkeys(("jobs_printed", "jobs_failed", "jobs_queued"), 0)


async def main(state_dir: Path) -> None:
    outbox = await Outbox.open(state_dir / "outbox.db", IDENTITY)
    ledger = JobLedger(DEVICE, state_dir / QUEUE_FILE, outbox, counters(), 1 << 20)
    job, _ = await ledger.submit("job-0", "raw", b"hello\n")
    job = await ledger.start(job)
    job = await ledger.sent(job)
    queue = await ledger.queue()

    async def die(job_id: str) -> None:  # the outcome is in the outbox; the queue never hears
        os.kill(os.getpid(), signal.SIGKILL)

    queue.mark_reported = die  # type: ignore[method-assign]
    await ledger.done(job)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
