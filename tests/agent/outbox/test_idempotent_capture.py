"""Idempotent capture: a key captured once makes every later capture of it a no-op."""

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from agent.errors import OutboxError
from agent.outbox import Identity, Outbox
from agent.outbox.store import CAPTURE_KEY_RETENTION_S
from protocol.printing import PrintCompletedPayload

IDENTITY = Identity("agent-1", "store-1")
DONE = PrintCompletedPayload(job_id="job-1", template="coupon", bytes_sent=10, attempts=1,
                             queued_ms=5)  # fmt: skip


def rows(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, event_id FROM outbox ORDER BY seq").fetchall()


async def test_same_key_twice_stores_one_event_and_uses_one_seq(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        first = await outbox.append("printer-1", DONE, idempotency_key="print:job-1")
        again = await outbox.append("printer-1", DONE, idempotency_key="print:job-1")
        other = await outbox.append("printer-1", DONE, idempotency_key="print:job-2")
        plain = await outbox.append("printer-1", DONE)
        stats = await outbox.stats()
    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert (other.seq, plain.seq) == (2, 3)  # no hole where the duplicate was refused
    assert stats.next_seq == 4
    assert [seq for seq, _ in rows(path)] == [1, 2, 3]


async def test_a_burst_with_one_key_commits_it_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        results = await asyncio.gather(
            *(outbox.append("printer-1", DONE, idempotency_key="print:burst") for _ in range(20))
        )
    assert len({r.seq for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len(rows(path)) == 1


async def test_keys_outlive_the_event_and_a_restart_but_not_their_retention(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        await outbox.capture("printer-1", DONE, idempotency_key="print:old")
        await outbox.capture("printer-1", DONE, idempotency_key="print:recent")
        await outbox.ack([1, 2])  # synced and deleted: the key stays
    with sqlite3.connect(path) as conn:
        aged = time.time() - CAPTURE_KEY_RETENTION_S - 60
        conn.execute("UPDATE capture_keys SET created_at = ? WHERE key = 'print:old'", (aged,))
    async with await Outbox.open(path, IDENTITY) as outbox:  # pruned at open
        recent = await outbox.append("printer-1", DONE, idempotency_key="print:recent")
        old = await outbox.append("printer-1", DONE, idempotency_key="print:old")
    assert (recent.duplicate, recent.seq) == (True, 2)
    assert (old.duplicate, old.seq) == (False, 3)


async def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "outbox.db", IDENTITY) as outbox:
        with pytest.raises(OutboxError, match="idempotency_key"):
            await outbox.append("printer-1", DONE, idempotency_key="")
        with pytest.raises(OutboxError, match="idempotency_key"):
            await outbox.append("printer-1", DONE, idempotency_key="k" * 201)
