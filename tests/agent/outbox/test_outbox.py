"""Outbox contract: durable, ordered, capped with per-kind drops, dead letters, bounded WAL."""

import asyncio
import json
import os
from pathlib import Path

import pytest

from agent.errors import OutboxClosed
from agent.outbox import Identity, Outbox
from agent.outbox import store as store_module
from agent.outbox import thread as thread_module
from protocol import EVENT_ADAPTER, DeviceStatusPayload, ScanPayload

IDENTITY = Identity("agent-1", "store-1")
SCAN = ScanPayload(raw_b64="QUJD", text="ABC")
STATUS = DeviceStatusPayload(state="online", condition="connected")


async def test_appended_events_are_stored_as_valid_envelopes_in_seq_order(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        results = await asyncio.gather(*(outbox.append("scanner-1", SCAN) for _ in range(50)))
        assert [r.seq for r in results] == list(range(1, 51))
        batch = await outbox.read_batch(100, 10**6)
    assert [row.seq for row in batch] == list(range(1, 51))
    events = [EVENT_ADAPTER.validate_json(row.body) for row in batch]
    assert [e.seq for e in events] == list(range(1, 51))
    assert {e.agent_id for e in events} == {"agent-1"}
    assert len({e.event_id for e in events}) == 50
    assert events[0].payload == SCAN


async def test_seq_keeps_increasing_across_reopen_even_after_everything_was_acked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        for _ in range(5):
            await outbox.append("scanner-1", SCAN)
        await outbox.ack(range(1, 6))
        assert (await outbox.stats()).backlog_events == 0
    async with await Outbox.open(path, IDENTITY) as outbox:
        result = await outbox.append("scanner-1", SCAN)
    assert result.seq == 6


async def test_read_batch_respects_count_and_bytes_but_returns_at_least_one(
    tmp_path: Path,
) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        for _ in range(10):
            await outbox.append("scanner-1", SCAN)
        assert len(await outbox.read_batch(4, 10**6)) == 4
        one_size = len((await outbox.read_batch(1, 10**6))[0].body)
        assert len(await outbox.read_batch(10, one_size * 3 + 3)) == 3
        assert len(await outbox.read_batch(10, 1)) == 1


async def test_dead_letter_moves_rows_with_reason_and_counts_them(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        for _ in range(3):
            await outbox.append("scanner-1", SCAN)
        await outbox.dead_letter([(2, "payload.text: too long")])
        stats = await outbox.stats()
        assert stats.backlog_events == 2
        assert stats.dead_letters == 1
        assert [r.seq for r in await outbox.read_batch(10, 10**6)] == [1, 3]
    db = __import__("sqlite3").connect(tmp_path / "o.db")
    reason, body = db.execute("SELECT reason, body FROM dead_letter WHERE seq = 2").fetchone()
    assert reason == "payload.text: too long"
    assert json.loads(body)["seq"] == 2


async def test_cap_drops_oldest_scans_first_and_counts_them(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY, max_bytes=1024 * 1024) as outbox:
        await outbox.append("printer-1", STATUS)  # never droppable
        size = len((await outbox.read_batch(1, 10**6))[0].body)
        n = 4 * (1024 * 1024) // size
        for chunk in range(0, n, 500):
            await asyncio.gather(*(outbox.append("scanner-1", SCAN) for _ in range(500)))
            del chunk
        stats = await outbox.stats()
        assert stats.backlog_bytes <= 1024 * 1024
        assert stats.losses["outbox_full"] > 0
        assert stats.losses["outbox_full"] + stats.backlog_events == 1 + (n + 499) // 500 * 500
        batch = await outbox.read_batch(2, 10**6)
        # The status event survived; the scans kept are the newest ones.
        assert batch[0].seq == 1
        assert batch[1].seq > 2
        assert not stats.over_cap


async def test_kinds_that_are_never_dropped_are_kept_over_the_cap_with_an_alarm(
    tmp_path: Path,
) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY, max_bytes=1024 * 1024) as outbox:
        while (await outbox.stats()).backlog_bytes < 1024 * 1024 - 2000:
            await asyncio.gather(*(outbox.append("printer-1", STATUS) for _ in range(200)))
        kept_before = (await outbox.stats()).backlog_events
        scans = await asyncio.gather(*(outbox.append("scanner-1", SCAN) for _ in range(100)))
        statuses = await asyncio.gather(*(outbox.append("printer-1", STATUS) for _ in range(20)))
        stats = await outbox.stats()
    assert all(r.seq is not None for r in statuses)
    dropped = [r for r in scans if r.dropped]
    assert dropped
    assert all(r.dropped == "outbox_full" for r in dropped)
    assert stats.losses["outbox_full"] == len(dropped)
    assert stats.over_cap
    assert stats.backlog_events == kept_before + 20 + (100 - len(dropped))


async def test_wal_stays_bounded_under_sustained_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_SIZE_LIMIT", 512 * 1024)
    monkeypatch.setattr(thread_module, "CHECKPOINT_MIN_WAL_BYTES", 256 * 1024)
    monkeypatch.setattr(thread_module, "CHECKPOINT_INTERVAL_S", 0.05)
    path = tmp_path / "o.db"
    wal = Path(f"{path}-wal")
    big = ScanPayload(raw_b64="QUJD" * 1000, text="x")
    peak = 0
    async with await Outbox.open(path, IDENTITY) as outbox:
        for _ in range(40):
            await asyncio.gather(*(outbox.append("scanner-1", big) for _ in range(50)))
            batch = await outbox.read_batch(1000, 10**8)
            await outbox.ack([row.seq for row in batch])
            await asyncio.sleep(0.06)
            peak = max(peak, wal.stat().st_size)
    # ~16 MB were written in total; without checkpoints the WAL would hold all of it.
    assert peak < 4 * 1024 * 1024


async def test_closed_outbox_refuses_appends(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", IDENTITY)
    await outbox.close()
    await outbox.close()
    with pytest.raises(OutboxClosed):
        await outbox.append("scanner-1", SCAN)


async def test_wait_for_events_wakes_on_commit(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        waiter = asyncio.create_task(outbox.wait_for_events(timeout=5))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await outbox.append("scanner-1", SCAN)
        await asyncio.wait_for(waiter, 1)


def test_outbox_file_is_not_world_readable_after_umask(tmp_path: Path) -> None:
    # The state dir is 0700 (install issue); the file itself inherits the process umask.
    old = os.umask(0o077)
    try:
        asyncio.run(_open_close(tmp_path / "o.db"))
    finally:
        os.umask(old)
    assert (tmp_path / "o.db").stat().st_mode & 0o077 == 0


async def _open_close(path: Path) -> None:
    outbox = await Outbox.open(path, IDENTITY)
    await outbox.close()
