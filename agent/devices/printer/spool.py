"""Queue a print job for a running agent from another process (a POS link, a script, a test).

The queue file is shared safely (WAL, busy timeout); the agent's driver takes the job at its
next status poll, so nothing needs to reach into the agent process.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.devices.printer import templates
from agent.devices.printer.jobs import check_names
from agent.devices.printer.queue import QUEUE_FILE, Job, PrintQueue


async def spool_template(
    state_dir: Path, device_id: str, job_id: str, template: str, fields: Mapping[str, Any]
) -> tuple[Job, bool]:
    """Render and queue a job for printer `device_id`; (job, new). EncodeError if it cannot render.

    The same job_id again returns the stored job and queues nothing (the queue's idempotency).
    """
    check_names(job_id, template)
    data = templates.render(template, fields)
    queue = await PrintQueue.open(Path(state_dir) / QUEUE_FILE, device_id)
    try:
        return await queue.enqueue(job_id, template, data)
    finally:
        await queue.close()
