"""The durable print queue on real SQLite files: idempotent, ordered, restart-safe."""

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.devices.printer.errors import QueueError
from agent.devices.printer.queue import (
    QUEUE_FILE,
    UNCERTAIN_RESTART,
    UNSENT_RESTART,
    JobState,
    PrintQueue,
)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[PrintQueue]:
    opened = await PrintQueue.open(tmp_path / QUEUE_FILE, "printer-till")
    yield opened
    await opened.close()


async def test_enqueue_is_idempotent_on_job_id(queue: PrintQueue) -> None:
    first, new = await queue.enqueue("job-1", "coupon", b"first")
    again, new_again = await queue.enqueue("job-1", "coupon", b"second attempt")
    assert (new, new_again) == (True, False)
    assert again == first
    assert again.data == b"first"  # the first submit wins; a retry never replaces the job
    assert (await queue.counts())["queued"] == 1


async def test_jobs_come_out_oldest_first_and_move_forward_only(queue: PrintQueue) -> None:
    for n in range(3):
        await queue.enqueue(f"job-{n}", "receipt", b"x%d" % n)
    job = await queue.next_queued()
    assert job is not None
    assert job.job_id == "job-0"
    printing = await queue.mark_printing("job-0")
    assert (printing.state, printing.attempts) == (JobState.PRINTING, 0)
    nxt = await queue.next_queued()
    assert nxt is not None
    assert nxt.job_id == "job-1"
    with pytest.raises(QueueError, match="printing"):
        await queue.mark_done("job-0")  # done only once the job itself was sent
    sent = await queue.mark_sent("job-0")
    assert (sent.state, sent.attempts) == (JobState.SENT, 1)  # attempts count sends
    done = await queue.mark_done("job-0")
    assert done.state is JobState.DONE
    assert done.finished_at is not None
    with pytest.raises(QueueError, match="done"):
        await queue.mark_printing("job-0")  # a finished job is never printed again
    with pytest.raises(QueueError, match="done"):
        await queue.requeue("job-0", reprint=True, note="x")
    with pytest.raises(QueueError, match="queued"):
        await queue.mark_done("job-1")  # done only after printing
    failed = await queue.mark_failed("job-1", "bad")
    assert (failed.state, failed.reason) == (JobState.FAILED, "bad")
    assert await queue.counts() == {
        "queued": 1, "printing": 0, "sent": 0, "done": 1, "failed": 1}  # fmt: skip


async def test_requeue_keeps_the_reprint_mark_and_why(queue: PrintQueue) -> None:
    await queue.enqueue("job-0", "coupon", b"x")
    await queue.mark_printing("job-0")
    unsent = await queue.requeue("job-0", reprint=False, note="start not confirmed")
    assert (unsent.state, unsent.reprint, unsent.note) == (
        JobState.QUEUED, False, "start not confirmed")  # fmt: skip
    await queue.mark_printing("job-0")
    await queue.mark_sent("job-0")
    copy = await queue.requeue("job-0", reprint=True, note="confirmation lost")
    await queue.mark_printing("job-0")
    again = await queue.requeue("job-0", reprint=False, note="start not confirmed")
    assert (copy.reprint, again.reprint, again.note) == (True, True, "confirmation lost")
    assert again.attempts == 1


async def test_reopen_decides_unfinished_jobs_from_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    queue = await PrintQueue.open(path, "p1")
    for job_id in "abcde":
        await queue.enqueue(job_id, "coupon", job_id.upper().encode())
    await queue.mark_printing("a")
    await queue.mark_sent("a")
    await queue.mark_done("a")  # done but its event not yet reported when the agent died
    await queue.mark_printing("b")  # died with only b's start marker out
    await queue.mark_printing("c")
    await queue.mark_sent("c")  # died with c's bytes out, unconfirmed
    await queue.mark_printing("d")
    await queue.mark_sent("d")
    await queue.requeue("d", reprint=True, note="link lost")
    await queue.mark_printing("d")
    await queue.mark_sent("d")  # died with d's marked copy out, unconfirmed too
    await queue.close()

    reopened = await PrintQueue.open(path, "p1")
    try:
        unreported = await reopened.recover()
        assert [(j.job_id, j.state) for j in unreported] == [
            ("a", JobState.DONE), ("d", JobState.FAILED)]  # fmt: skip
        assert unreported[1].reason is not None
        assert unreported[1].reason.startswith("uncertain:")  # never a third print
        b, c = await reopened.get("b"), await reopened.get("c")
        assert b is not None
        assert c is not None
        assert (b.state, b.reprint, b.note) == (JobState.QUEUED, False, UNSENT_RESTART)
        assert (c.state, c.reprint, c.note) == (JobState.QUEUED, True, UNCERTAIN_RESTART)
        nxt = await reopened.next_queued()
        assert nxt is not None
        assert (nxt.job_id, nxt.data) == ("b", b"B")  # requeued jobs keep their place
        for job in unreported:
            await reopened.mark_reported(job.job_id)
        assert await reopened.recover() == []  # reported once, never again
    finally:
        await reopened.close()


async def test_two_printers_share_the_file_but_not_their_jobs(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    till, kitchen = await PrintQueue.open(path, "till"), await PrintQueue.open(path, "kitchen")
    try:
        await till.enqueue("t1", "receipt", b"T")
        await kitchen.enqueue("k1", "receipt", b"K")
        _, new = await kitchen.enqueue("t1", "receipt", b"T")
        assert not new  # job ids are global: a retry to the wrong printer is not a second job
        assert [(await q.next_queued()).job_id for q in (till, kitchen)] == ["t1", "k1"]  # type: ignore[union-attr]
        with pytest.raises(QueueError, match="no job"):
            await kitchen.mark_printing("t1")
    finally:
        await till.close()
        await kitchen.close()


async def test_wal_full_sync_and_sqlite_stays_off_the_loop(
    queue: PrintQueue, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / QUEUE_FILE) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sync = await queue._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    assert sync == 2  # FULL
    thread = await queue._run(lambda conn: threading.current_thread().name)
    assert thread.startswith("printqueue:")
    assert thread != threading.current_thread().name


async def test_prune_drops_only_old_reported_jobs(queue: PrintQueue) -> None:
    for job_id in ("old-reported", "old-unreported"):
        await queue.enqueue(job_id, "coupon", b"x")
        await queue.mark_printing(job_id)
        await queue.mark_sent(job_id)
        await queue.mark_done(job_id)
    await queue.mark_reported("old-reported")
    await queue.enqueue("still-queued", "coupon", b"x")
    assert await queue.prune(older_than_s=-1) == 1
    assert await queue.get("old-reported") is None
    assert await queue.get("old-unreported") is not None
    assert await queue.get("still-queued") is not None


async def test_closed_queue_refuses(tmp_path: Path) -> None:
    queue = await PrintQueue.open(tmp_path / QUEUE_FILE, "p1")
    await queue.close()
    await queue.close()  # idempotent
    with pytest.raises(QueueError, match="closed"):
        await queue.enqueue("x", "coupon", b"x")


async def test_unopenable_file_is_a_queue_error(tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="cannot open"):
        await PrintQueue.open(tmp_path / "missing-dir" / QUEUE_FILE, "p1")
