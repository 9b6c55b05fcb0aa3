"""Durable print queue: one SQLite file, one thread, each state change committed first."""

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from agent.devices.printer.errors import QueueError

QUEUE_FILE = "printqueue.db"
# Finished jobs are kept this long, so a caller retrying a submit within it gets the old job
# back instead of a second print (the idempotency window; docs/PRINTERS.md).
RETENTION_S = 7 * 24 * 3600.0
# Why a job went back to the queue after an agent restart (docs/PRINTERS.md, "Jobs").
UNSENT_RESTART = "agent restarted before the printer confirmed the job's start"
UNCERTAIN_RESTART = "agent restarted after the job was sent, before its confirmation"

_T = TypeVar("_T")


class JobState(StrEnum):
    """queued → printing → sent → done | failed; back to queued only on evidence (requeue)."""

    QUEUED = "queued"
    PRINTING = "printing"  # the start marker is out; no byte of the job yet
    SENT = "sent"  # the printer confirmed the start: the job's bytes go out (may be on paper)
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """One print job as stored; `reported` once its print.* event is in the outbox.

    `reprint`: the next (or last) print is a visibly marked reprint, because an earlier attempt
    may already be on paper; `note` says why.
    """

    seq: int
    job_id: str
    device_id: str
    template: str
    data: bytes
    state: JobState
    attempts: int
    enqueued_at: float
    finished_at: float | None
    reason: str | None
    reported: bool
    reprint: bool = False
    note: str | None = None

    @property
    def queued_ms(self) -> int:
        """Milliseconds from enqueue to finish (or to now while unfinished)."""
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0, int((end - self.enqueued_at) * 1000))


def _v1(db: sqlite_utils.Database) -> None:
    # seq orders the queue (oldest first); job_id is the caller's idempotency key.
    db.table("jobs").create(
        {
            "seq": int, "job_id": str, "device_id": str, "template": str, "data": bytes,
            "state": str, "attempts": int, "enqueued_at": float, "finished_at": float,
            "reason": str, "reported": int,
        },
        pk="seq",
        not_null={"job_id", "device_id", "template", "data", "state", "attempts", "enqueued_at",
                  "reported"},
    )  # fmt: skip
    db.execute("CREATE UNIQUE INDEX jobs_job_id ON jobs(job_id)")
    db.execute("CREATE INDEX jobs_by_state ON jobs(device_id, state, seq)")


def _v2(db: sqlite_utils.Database) -> None:
    # reprint: the job may already be on paper once, so its next print is marked as a copy.
    db.execute("ALTER TABLE jobs ADD COLUMN reprint INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN note TEXT")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2]
_COLUMNS = (
    "seq, job_id, device_id, template, data, state, attempts, enqueued_at, finished_at, "
    "reason, reported, reprint, note"
)


class PrintQueue:
    """One printer's jobs in the shared queue file; every method commits before it returns."""

    def __init__(self, executor: ThreadPoolExecutor, conn: sqlite3.Connection, device_id: str):
        self._executor = executor
        self._conn = conn
        self.device_id = device_id
        self._closed = False

    @classmethod
    async def open(cls, path: Path, device_id: str, synchronous: str = "FULL") -> "PrintQueue":
        """Open (creating and migrating) the queue file at `path` for `device_id`."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"printqueue:{device_id}")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path, synchronous)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise QueueError(f"cannot open print queue {path}: {exc}") from exc
        return cls(executor, conn, device_id)

    async def enqueue(self, job_id: str, template: str, data: bytes) -> tuple[Job, bool]:
        """Store a queued job unless `job_id` exists; (the job as stored, whether it is new)."""

        def insert(conn: sqlite3.Connection) -> tuple[Job, bool]:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, device_id, template, data, state, attempts,"
                " enqueued_at, reported) VALUES (?, ?, ?, ?, 'queued', 0, ?, 0)",
                (job_id, self.device_id, template, data, time.time()),
            )
            job = _get(conn, job_id)
            assert job is not None  # inserted or already there, in this same transaction
            return job, cursor.rowcount == 1

        return await self._run(insert)

    async def add_failed(self, job_id: str, template: str, reason: str) -> tuple[Job, bool]:
        """Record a job that failed before it could be queued (bad data); idempotent too."""

        def insert(conn: sqlite3.Connection) -> tuple[Job, bool]:
            now = time.time()
            cursor = conn.execute(
                "INSERT OR IGNORE INTO jobs (job_id, device_id, template, data, state, attempts,"
                " enqueued_at, finished_at, reason, reported)"
                " VALUES (?, ?, ?, x'', 'failed', 0, ?, ?, ?, 0)",
                (job_id, self.device_id, template, now, now, reason),
            )
            job = _get(conn, job_id)
            assert job is not None
            return job, cursor.rowcount == 1

        return await self._run(insert)

    async def get(self, job_id: str) -> Job | None:
        """The job stored under `job_id`, whichever printer it belongs to."""
        return await self._run(lambda conn: _get(conn, job_id))

    async def next_queued(self) -> Job | None:
        """The oldest queued job of this printer."""
        return await self._run(
            lambda conn: _one(
                conn,
                f"SELECT {_COLUMNS} FROM jobs WHERE device_id = ? AND state = 'queued'"
                " ORDER BY seq LIMIT 1",
                (self.device_id,),
            )
        )

    async def mark_printing(self, job_id: str) -> Job:
        """queued → printing: committed before the start marker goes out."""
        return await self._transition(job_id, (JobState.QUEUED,), JobState.PRINTING, None)

    async def mark_sent(self, job_id: str) -> Job:
        """printing → sent, attempts + 1: committed before the job's first byte goes out."""
        return await self._transition(job_id, (JobState.PRINTING,), JobState.SENT, None)

    async def mark_done(self, job_id: str) -> Job:
        """sent → done: the printer confirmed the job."""
        return await self._transition(job_id, (JobState.SENT,), JobState.DONE, None)

    async def mark_failed(self, job_id: str, reason: str) -> Job:
        """Any unfinished state → failed, never to be retried."""
        return await self._transition(job_id, _UNFINISHED, JobState.FAILED, reason)

    async def requeue(self, job_id: str, *, reprint: bool, note: str) -> Job:
        """printing or sent → queued again; `reprint` marks the next print as a reprint."""

        def update(conn: sqlite3.Connection) -> Job:
            self._check(conn, job_id, (JobState.PRINTING, JobState.SENT), JobState.QUEUED)
            conn.execute(
                # A reprint keeps the note saying why it is one; the console needs that most.
                "UPDATE jobs SET state = 'queued', note = CASE WHEN reprint = 1 AND ? = 0"
                " THEN note ELSE ? END, reprint = max(reprint, ?) WHERE job_id = ?",
                (int(reprint), note, int(reprint), job_id),
            )
            updated = _get(conn, job_id)
            assert updated is not None
            return updated

        return await self._run(update)

    async def mark_reported(self, job_id: str) -> None:
        """The job's print.* event is durable in the outbox."""
        await self._run(
            lambda conn: conn.execute("UPDATE jobs SET reported = 1 WHERE job_id = ?", (job_id,))
        )

    async def recover(self) -> list[Job]:
        """After a restart: decide unfinished jobs from what was committed; unreported outcomes.

        `printing` (no byte of the job sent) → queued again. `sent` (the job may be on paper)
        → queued as a marked copy, or failed if it already was the copy: never a third print.
        """

        def settle(conn: sqlite3.Connection) -> list[Job]:
            mine = (self.device_id,)
            conn.execute(
                "UPDATE jobs SET state = 'queued', note = CASE WHEN reprint = 1 THEN note"
                " ELSE ? END WHERE device_id = ? AND state = 'printing'",
                (UNSENT_RESTART, *mine),
            )
            conn.execute(
                "UPDATE jobs SET state = 'failed', finished_at = ?, reason = ?"
                " WHERE device_id = ? AND state = 'sent' AND reprint = 1",
                (time.time(), f"uncertain: {UNCERTAIN_RESTART}, and the copy too", *mine),
            )
            conn.execute(
                "UPDATE jobs SET state = 'queued', reprint = 1, note = ? WHERE device_id = ?"
                " AND state = 'sent'",
                (UNCERTAIN_RESTART, *mine),
            )
            return _all(
                conn,
                f"SELECT {_COLUMNS} FROM jobs WHERE device_id = ? AND reported = 0"
                " AND state IN ('done', 'failed') ORDER BY seq",
                mine,
            )

        return await self._run(settle)

    async def prune(self, older_than_s: float = RETENTION_S) -> int:
        """Delete reported, finished jobs older than the retention window; how many went."""
        cutoff = time.time() - older_than_s
        return await self._run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM jobs WHERE device_id = ? AND reported = 1"
                    " AND state IN ('done', 'failed') AND finished_at < ?",
                    (self.device_id, cutoff),
                ).rowcount
            )
        )

    async def counts(self) -> dict[str, int]:
        """Jobs of this printer per state (every state present, zero or not)."""
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT state, count(*) FROM jobs WHERE device_id = ? GROUP BY state",
                (self.device_id,),
            ).fetchall()
        )
        return {state.value: 0 for state in JobState} | dict(rows)

    async def close(self) -> None:
        """Close the connection and its thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)  # idle now: its last call was the close above

    def _check(
        self, conn: sqlite3.Connection, job_id: str, sources: tuple[JobState, ...], target: JobState
    ) -> Job:
        job = _get(conn, job_id)
        if job is None or job.device_id != self.device_id:
            raise QueueError(f"no job {job_id!r} for {self.device_id}")
        if job.state not in sources:
            raise QueueError(f"job {job_id!r} is {job.state}, cannot become {target}")
        return job

    async def _transition(
        self, job_id: str, sources: tuple[JobState, ...], target: JobState, reason: str | None
    ) -> Job:
        def update(conn: sqlite3.Connection) -> Job:
            self._check(conn, job_id, sources, target)
            finished = time.time() if target in (JobState.DONE, JobState.FAILED) else None
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + ?, finished_at = ?, reason = ?"
                " WHERE job_id = ?",
                (target.value, int(target is JobState.SENT), finished, reason, job_id),
            )
            updated = _get(conn, job_id)
            assert updated is not None
            return updated

        return await self._run(update)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `fn` in one committed transaction on the queue thread."""
        if self._closed:
            raise QueueError(f"print queue of {self.device_id} is closed")

        def call() -> _T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise QueueError(f"print queue of {self.device_id}: {exc}") from exc


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        conn.execute("PRAGMA busy_timeout=5000")  # another printer's queue may share the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        conn.execute("BEGIN IMMEDIATE")  # two printers opening at once must not both migrate
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        db = sqlite_utils.Database(conn)
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


_UNFINISHED = (JobState.QUEUED, JobState.PRINTING, JobState.SENT)


def _row(row: Any) -> Job:
    seq, job_id, device_id, template, data, state, attempts, enq, fin, reason, *flags = row
    reported, reprint, note = flags
    return Job(
        seq, job_id, device_id, template, bytes(data), JobState(state), attempts, enq, fin,
        reason, bool(reported), bool(reprint), note,
    )  # fmt: skip


def _get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    return _one(conn, f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Job | None:
    row = conn.execute(sql, params).fetchone()
    return _row(row) if row else None


def _all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Job]:
    return [_row(row) for row in conn.execute(sql, params)]
