"""A printer's job ledger: the durable queue plus exactly one print.* event per finished job."""

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.devices.base import EventSink, Payload
from agent.devices.printer import templates
from agent.devices.printer.errors import EncodeError
from agent.devices.printer.queue import Job, JobState, PrintQueue
from protocol.printing import PrintCompletedPayload, PrintFailedPayload

REASON_LEN = 256  # PrintFailedPayload.reason max_length
_JOB_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")  # protocol.base.Id: it goes on the wire


class JobLedger:
    """Queue access for one printer; each outcome is committed, then reported, then marked."""

    def __init__(
        self,
        device_id: str,
        queue_path: Path,
        sink: EventSink,
        counters: dict[str, int],
        max_job_bytes: int,
    ) -> None:
        self.device_id = device_id
        self.queue_path = queue_path
        self._sink = sink
        self._counters = counters  # the driver's: jobs_printed, jobs_failed, jobs_queued
        self._max_job_bytes = max_job_bytes
        self._queue: PrintQueue | None = None
        self._lock = asyncio.Lock()

    async def submit(self, job_id: str, template: str, data: bytes) -> tuple[Job, bool]:
        """Store the job (or find it under `job_id`); (job, newly queued). Bad data fails it."""
        check_names(job_id, template)
        if not data:
            return await self.reject(job_id, template, "bad job: no data"), False
        if len(data) > self._max_job_bytes:
            reason = f"bad job: {len(data)} bytes, over max_job_bytes"
            return await self.reject(job_id, template, reason), False
        job, new = await (await self.queue()).enqueue(job_id, template, data)
        if new:
            self._counters["jobs_queued"] += 1
        return job, new

    async def submit_template(
        self, job_id: str, template: str, fields: Mapping[str, Any]
    ) -> tuple[Job, bool]:
        """Render `template` with `fields`, then submit; data that does not render fails."""
        check_names(job_id, template)
        try:
            data = templates.render(template, fields)
        except EncodeError as exc:
            return await self.reject(job_id, template, f"bad template data: {exc}"), False
        return await self.submit(job_id, template, data)

    async def reject(self, job_id: str, template: str, reason: str) -> Job:
        """Record a job that can never print, reporting print.failed once per job_id."""
        job, new = await (await self.queue()).add_failed(job_id, template, reason[:REASON_LEN])
        if new:
            await self._report(job)
        return job

    async def recover(self) -> None:
        """At start: prune, settle jobs a crash left unfinished, report unreported outcomes."""
        queue = await self.queue()
        await queue.prune()
        for job in await queue.recover():
            await self._report(job)
        self._counters["jobs_queued"] = (await queue.counts())[JobState.QUEUED]

    async def next_queued(self) -> Job | None:
        """The oldest job waiting for this printer."""
        return await (await self.queue()).next_queued()

    async def start(self, job: Job) -> Job:
        """Mark `printing`, committed, before the start marker goes out."""
        return await (await self.queue()).mark_printing(job.job_id)

    async def sent(self, job: Job) -> Job:
        """Mark `sent`, committed, before the job's own bytes go out."""
        return await (await self.queue()).mark_sent(job.job_id)

    async def unsent(self, job: Job, why: str) -> Job:
        """No byte of the job reached the printer: back to the queue, printed as normal."""
        return await (await self.queue()).requeue(job.job_id, reprint=False, note=why[:REASON_LEN])

    async def uncertain(self, job: Job, why: str) -> Job:
        """The job may be on paper: queued once more as a marked copy, or failed if it was one."""
        if job.reprint:
            await self.failed(job, f"uncertain: {why}; the marked copy was not confirmed either")
            return job
        return await (await self.queue()).requeue(job.job_id, reprint=True, note=why[:REASON_LEN])

    async def done(self, job: Job) -> None:
        """The printer confirmed the job."""
        await self._finish(await (await self.queue()).mark_done(job.job_id))

    async def failed(self, job: Job, reason: str) -> None:
        """The job is given up on; it is never printed again."""
        await self._finish(await (await self.queue()).mark_failed(job.job_id, reason[:REASON_LEN]))

    async def queue(self) -> PrintQueue:
        """The open queue, opened (and its folder made) on first use."""
        async with self._lock:
            if self._queue is None:
                self.queue_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._queue = await PrintQueue.open(self.queue_path, self.device_id)
            return self._queue

    async def close(self) -> None:
        """Close the queue file; the next call reopens it."""
        async with self._lock:
            if self._queue is not None:
                await self._queue.close()
                self._queue = None

    async def _finish(self, job: Job) -> None:
        self._counters["jobs_queued"] = max(0, self._counters["jobs_queued"] - 1)
        await self._report(job)

    async def _report(self, job: Job) -> None:
        payload: Payload
        if job.state is JobState.DONE:
            self._counters["jobs_printed"] += 1
            payload = PrintCompletedPayload(
                job_id=job.job_id, template=job.template, bytes_sent=len(job.data),
                attempts=max(job.attempts, 1), queued_ms=job.queued_ms, reprint=job.reprint,
                note=job.note[:REASON_LEN] if job.note else None,
            )  # fmt: skip
        else:
            self._counters["jobs_failed"] += 1
            payload = PrintFailedPayload(
                job_id=job.job_id, template=job.template,
                reason=(job.reason or "failed")[:REASON_LEN], attempts=job.attempts,
            )  # fmt: skip
        # A crash between these two lines re-reports the job at the next start; the key makes
        # that second capture a no-op in the outbox, so the cloud sees one event, seq gap-free.
        await self._sink.capture(
            self.device_id, payload, datetime.now(UTC), idempotency_key=outcome_key(job)
        )
        await (await self.queue()).mark_reported(job.job_id)


def outcome_key(job: Job) -> str:
    """The outbox idempotency key of a job's one print.* event.

    The enqueue time is part of it: a job_id may come back as a new job once the old one was
    pruned (queue.RETENTION_S), and that job's outcome must not be taken for the old one's.
    """
    return f"print-outcome:{job.job_id}:{job.enqueued_at!r}"


def check_names(job_id: str, template: str) -> None:
    """ValueError unless `job_id` is a wire Id and `template` a 1–64 character name."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"job_id must match {_JOB_ID.pattern}, not {job_id!r}")
    if not 1 <= len(template) <= 64:
        raise ValueError(f"template name must be 1–64 characters, not {template!r}")
