"""A corrupted outbox is quarantined (kept), salvaged into a fresh one, alerted; capture goes on."""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent.outbox import Identity, Outbox
from agent.outbox.quarantine import QUARANTINE_DIR, SEQ_EPOCH, history
from protocol import ScanPayload

ID = Identity("agent-q", "store-q")
PAGE = 4096


def _scan(n: int) -> ScanPayload:
    return ScanPayload(raw_b64="QUJD", text=f"SCAN-{n:05d}-" + "x" * 200)


async def _filled(path: Path, count: int) -> dict[int, bytes]:
    """An outbox with `count` unsynced scans and one coupon-ledger row, checkpointed to disk."""
    async with await Outbox.open(path, ID) as box:
        for n in range(count):
            await box.append("scanner-1", _scan(n))
        await box.query(
            lambda c: c.execute(
                "INSERT INTO coupon_ledger VALUES (7, 1, 'red-7', 'offline', 500, 'pos', "
                "NULL, 0, 2000000000)"
            )
        )
    conn = sqlite3.connect(path)
    rows = dict(conn.execute("SELECT seq, body FROM outbox").fetchall())
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rows


def _outbox_leaf_pages(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [
            page
            for (page,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
    finally:
        conn.close()


def _smash(path: Path, page: int) -> None:
    with path.open("r+b") as f:
        f.seek((page - 1) * PAGE)
        f.write(b"\xa5" * PAGE)


async def test_a_destroyed_header_is_quarantined_and_capture_goes_on_in_a_new_epoch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    await _filled(path, 50)
    with path.open("r+b") as f:
        f.write(b"this is not sqlite" * 10)
    async with await Outbox.open(path, ID) as box:
        result = await box.append("scanner-1", _scan(999))
        stats = await box.stats()
        alerts = box.alerts()
    kept = list((tmp_path / QUARANTINE_DIR).glob("outbox-*.db"))
    assert len(kept) == 1, "the damaged file must be kept for forensics"
    assert kept[0].read_bytes().startswith(b"this is not sqlite")
    # Nothing could prove the last seq: a new epoch, above anything the old file issued.
    assert result.seq == SEQ_EPOCH + 1
    assert stats.backlog_events == 1
    assert len(alerts) == 1
    assert "outbox corrupt" in alerts[0]
    assert "0 unsynced events salvaged" in alerts[0]
    [record] = history(tmp_path)
    assert record.next_seq == SEQ_EPOCH + 1
    assert record.last_seq is None


async def test_a_damaged_page_loses_only_its_rows_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    original = await _filled(path, 300)
    leaves = _outbox_leaf_pages(path)
    assert len(leaves) > 4
    _smash(path, leaves[len(leaves) // 2])
    async with await Outbox.open(path, ID) as box:
        batch = await box.read_batch(1000, 10**8)
        result = await box.append("scanner-1", _scan(300))
        ledger = await box.query(
            lambda c: c.execute("SELECT coupon_id FROM coupon_ledger").fetchall()
        )
        check = await box.query(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])
    salvaged = {row.seq: row.body for row in batch}
    assert 0 < len(salvaged) < len(original)
    assert all(original[seq] == body for seq, body in salvaged.items()), "bytes changed"
    assert result.seq == 301, "the old counter was readable: seq goes on, no jump"
    assert ledger == [(7,)], "the coupon ledger must survive, or a coupon could be used twice"
    assert check == "ok"
    [record] = history(tmp_path)
    assert record.salvaged_events == len(salvaged)
    assert record.last_seq == 300


async def test_corruption_found_while_running_is_quarantined_without_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with await Outbox.open(path, ID) as box:
        for n in range(300):
            await box.append("scanner-1", _scan(n))
        await box.query(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        leaves = _outbox_leaf_pages(path)
        for page in leaves[1:-1]:
            _smash(path, page)
        # Drop the connection's page cache so the next read goes to the damaged file.
        await box.query(lambda c: c.execute("PRAGMA shrink_memory"))
        batch = await box.read_batch(1000, 10**8)  # finds the damage, recovers, answers
        after = await box.append("scanner-1", _scan(1000))
        await asyncio.sleep(0.05)
        assert len(box.quarantines) == 1
        assert box.alerts()
    assert 0 < len(batch) < 300
    assert after.seq == 301
    assert len(list((tmp_path / QUARANTINE_DIR).glob("outbox-*.db"))) == 1


async def test_a_sound_outbox_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await _filled(path, 10)
    async with await Outbox.open(path, ID) as box:
        assert (await box.stats()).backlog_events == 10
        assert box.alerts() == []
    assert not (tmp_path / QUARANTINE_DIR).exists()


@pytest.mark.parametrize("times", [2, 3])
async def test_each_further_quarantine_starts_a_higher_epoch(tmp_path: Path, times: int) -> None:
    path = tmp_path / "outbox.db"
    seqs = []
    for _ in range(times):
        async with await Outbox.open(path, ID) as box:
            seqs.append((await box.append("scanner-1", _scan(0))).seq)
        path.write_bytes(b"garbage" * 1000)
        Path(f"{path}-wal").unlink(missing_ok=True)
    async with await Outbox.open(path, ID) as box:
        seqs.append((await box.append("scanner-1", _scan(0))).seq)
    assert seqs == [1] + [k * SEQ_EPOCH + 1 for k in range(1, times + 1)]
