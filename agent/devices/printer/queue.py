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
UNCERTAIN_RESTART = "uncertain: agent restarted mid-job"

_T = TypeVar("_T")


class JobState(StrEnum):
    """queued → printing → done | failed; a job never goes back to queued."""

    QUEUED = "queued"
    PRINTING = "printing"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """One print job as stored; `reported` once its print.* event is in the outbox."""

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


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1]
_COLUMNS = (
    "seq, job_id, device_id, template, data, state, attempts, enqueued_at, finished_at, "
    "reason, reported"
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
        """queued → printing, attempts + 1: committed before the first byte goes out."""
        return await self._transition(job_id, JobState.QUEUED, JobState.PRINTING, None)

    async def mark_done(self, job_id: str) -> Job:
        """printing → done: the printer confirmed the job."""
        return await self._transition(job_id, JobState.PRINTING, JobState.DONE, None)

    async def mark_failed(self, job_id: str, reason: str) -> Job:
        """queued or printing → failed, never to be retried."""
        return await self._transition(job_id, None, JobState.FAILED, reason)

    async def mark_reported(self, job_id: str) -> None:
        """The job's print.* event is durable in the outbox."""
        await self._run(
            lambda conn: conn.execute("UPDATE jobs SET reported = 1 WHERE job_id = ?", (job_id,))
        )

    async def recover(self) -> list[Job]:
        """After a restart: fail every `printing` job as uncertain (never reprint it blindly)."""

        def fail(conn: sqlite3.Connection) -> list[Job]:
            conn.execute(
                "UPDATE jobs SET state = 'failed', reason = ?, finished_at = ?"
                " WHERE device_id = ? AND state = 'printing'",
                (UNCERTAIN_RESTART, time.time(), self.device_id),
            )
            return _all(
                conn,
                f"SELECT {_COLUMNS} FROM jobs WHERE device_id = ? AND reported = 0"
                " AND state IN ('done', 'failed') ORDER BY seq",
                (self.device_id,),
            )

        return await self._run(fail)

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

    async def _transition(
        self, job_id: str, source: JobState | None, target: JobState, reason: str | None
    ) -> Job:
        def update(conn: sqlite3.Connection) -> Job:
            job = _get(conn, job_id)
            if job is None or job.device_id != self.device_id:
                raise QueueError(f"no job {job_id!r} for {self.device_id}")
            allowed = (source,) if source else (JobState.QUEUED, JobState.PRINTING)
            if job.state not in allowed:
                raise QueueError(f"job {job_id!r} is {job.state}, cannot become {target}")
            finished = None if target is JobState.PRINTING else time.time()
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + ?, finished_at = ?, reason = ?"
                " WHERE job_id = ?",
                (target.value, int(target is JobState.PRINTING), finished, reason, job_id),
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


def _row(row: Any) -> Job:
    seq, job_id, device_id, template, data, state, attempts, enq, fin, reason, reported = row
    return Job(
        seq, job_id, device_id, template, bytes(data), JobState(state), attempts, enq, fin,
        reason, bool(reported),
    )  # fmt: skip


def _get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    return _one(conn, f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Job | None:
    row = conn.execute(sql, params).fetchone()
    return _row(row) if row else None


def _all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Job]:
    return [_row(row) for row in conn.execute(sql, params)]
