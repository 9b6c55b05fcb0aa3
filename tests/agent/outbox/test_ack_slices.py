"""A large ack deletes ACK_SLICE rows per transaction: captures queued behind it commit with
its first slice, not after all of it, and every slice queued before a stop is still applied."""

import asyncio
import threading
from pathlib import Path

from agent.outbox import Guard, Identity, Outbox
from agent.outbox.thread import ACK_SLICE
from protocol import ScanPayload

IDENTITY = Identity("agent-1", "store-1")
SCAN = ScanPayload(raw_b64="QUJD", text="ABC")
ROWS = 20 * ACK_SLICE


async def fill(outbox: Outbox, n: int) -> None:
    for start in range(0, n, 500):
        await asyncio.gather(
            *(outbox.append("scanner-1", SCAN) for _ in range(min(500, n - start)))
        )


async def test_a_capture_queued_behind_a_large_ack_commits_with_its_first_slice(
    tmp_path: Path,
) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        await fill(outbox, ROWS)
        release = threading.Event()
        busy = asyncio.ensure_future(outbox.query(lambda conn: release.wait(10)))
        await asyncio.sleep(0.05)  # the writer is now held in `busy`
        acked = asyncio.ensure_future(outbox.ack(range(1, ROWS + 1)))
        await asyncio.sleep(0)
        # The guard runs in the capture's own transaction and records how many rows it saw.
        probe = Guard("INSERT INTO losses VALUES ('probe', (SELECT count(*) FROM outbox))", ())
        captured = asyncio.ensure_future(outbox.append("scanner-1", SCAN, guard=probe))
        await asyncio.sleep(0)
        release.set()
        await busy
        result = await captured
        await acked
        # One slice was gone when the capture committed, not the whole ack.
        assert (await outbox.stats()).losses["probe"] == ROWS - ACK_SLICE
        stats = await outbox.stats()
        assert result.seq == ROWS + 1
        assert stats.backlog_events == 1
        assert [row.seq for row in await outbox.read_batch(10, 10**6)] == [ROWS + 1]
        counted = await outbox.query(
            lambda conn: conn.execute("SELECT count(*), sum(length(body)) FROM outbox").fetchone()
        )
        assert (stats.backlog_events, stats.backlog_bytes) == tuple(counted)


async def test_close_applies_every_slice_of_an_ack_queued_before_it(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        await fill(outbox, ROWS)
        acked = asyncio.ensure_future(outbox.ack(range(1, ROWS + 1)))
        await asyncio.sleep(0)  # queued, at most a slice or two deleted yet
        await outbox.close()
        await acked
    async with await Outbox.open(path, IDENTITY) as outbox:
        stats = await outbox.stats()
        assert (stats.backlog_events, stats.next_seq) == (0, ROWS + 1)
