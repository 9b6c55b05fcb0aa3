"""The drain's reads and acks beside captures: reads never queue behind the writer, an ack
commits with the captures waiting beside it, and the byte accounting stays exact."""

import asyncio
import threading
from pathlib import Path

from agent.outbox import Identity, Outbox
from protocol import ScanPayload

IDENTITY = Identity("agent-1", "store-1")
SCAN = ScanPayload(raw_b64="QUJD", text="ABC")


async def test_reads_return_while_the_writer_is_busy(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        for _ in range(3):
            await outbox.append("scanner-1", SCAN)
        release = threading.Event()
        busy = asyncio.ensure_future(outbox.query(lambda conn: release.wait(10)))
        try:
            # The writer thread is stuck in `busy`: the drain's read must not wait for it.
            batch = await asyncio.wait_for(outbox.read_batch(10, 10**6), 5)
            assert [row.seq for row in batch] == [1, 2, 3]
            assert not busy.done()
        finally:
            release.set()
            await busy


async def test_acks_and_captures_committed_together_keep_exact_accounting(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    async with await Outbox.open(path, IDENTITY) as outbox:
        await asyncio.gather(*(outbox.append("scanner-1", SCAN) for _ in range(100)))
        # One burst: acks of the oldest 60 queued among 50 new captures.
        results = await asyncio.gather(
            *(outbox.append("scanner-1", SCAN) for _ in range(25)),
            outbox.ack(range(1, 31)),
            *(outbox.append("scanner-1", SCAN) for _ in range(25)),
            outbox.ack(range(31, 61)),
        )
        assert sorted(r.seq for r in results if r is not None and r.seq) == list(range(101, 151))
        stats = await outbox.stats()
        counted = await outbox.query(
            lambda conn: conn.execute("SELECT count(*), sum(length(body)) FROM outbox").fetchone()
        )
        assert (stats.backlog_events, stats.backlog_bytes) == tuple(counted)
        assert stats.backlog_events == 90
        batch = await outbox.read_batch(1000, 10**8)
        assert [row.seq for row in batch] == list(range(61, 151))
    # And it is what a reopened outbox finds.
    async with await Outbox.open(path, IDENTITY) as outbox:
        assert (await outbox.stats()).backlog_events == 90
