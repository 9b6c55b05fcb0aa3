"""Wall-clock jumps forward and back while events are captured and synced.

The agent's outbox, drain worker and heartbeats run in-process under time-machine (wall clock
moved, monotonic clock untouched, as NTP stepping or a dead RTC battery would); the cloud is
a real process on the true clock, behind the fault proxy for an outage mid-jump. seq,
ordering, delivery and the backoff must not care what the wall clock says.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine

from agent.credentials import enroll
from agent.outbox import Identity, Outbox
from agent.sync.client import IngestClient
from agent.sync.drain import DrainWorker
from agent.sync.heartbeat import HeartbeatLoop
from hardware.faults.stack import sqlite_cloud
from hardware.netfault import Fault, FaultProxy, always
from protocol import ScanPayload

STORE = "store-clock"
# (jump, scans captured after it): forward 2 h, back a day, back to true time.
PLAN = [(timedelta(0), 40), (timedelta(hours=2), 40), (timedelta(hours=-26), 40),
        (timedelta(hours=24), 40)]  # fmt: skip


def _scan(n: int) -> ScanPayload:
    return ScanPayload(raw_b64="QUJD", text=f"CLOCK-{n:04d}")


async def test_jumps_break_neither_seq_nor_order_nor_delivery_nor_backoff(tmp_path: Path) -> None:
    cloud = sqlite_cloud(tmp_path)
    cloud.start()
    proxy = FaultProxy(cloud.urls[0], always(Fault.PASS))
    await proxy.start()
    outbox: Outbox | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        credentials = await enroll(proxy.url, await asyncio.to_thread(cloud.enroll_code, STORE))
        client = IngestClient(credentials, timeout_s=2.0)
        with time_machine.travel(datetime.now(UTC), tick=True) as clock:
            outbox = await Outbox.open(
                tmp_path / "outbox.db", Identity(credentials.agent_id, credentials.store_id)
            )
            drain = DrainWorker(outbox, client, backoff_base_s=0.05, backoff_cap_s=0.5)
            beat = HeartbeatLoop(outbox, client, drain, list, interval_s=0.2)
            tasks = [asyncio.create_task(drain.run()), asyncio.create_task(beat.run())]
            n = 0
            stamps: list[datetime] = []
            offsets: list[float | None] = []
            for jump, count in PLAN:
                clock.shift(jump)
                if jump < timedelta(0):
                    # An outage while the clock is a day behind: the backoff runs on the
                    # monotonic clock, so sync must be back within seconds, not a day.
                    proxy.schedule = always(Fault.ERROR_BEFORE)
                for _ in range(count):
                    await outbox.append("scanner-1", _scan(n))
                    stamps.append(datetime.now(UTC))
                    n += 1
                await asyncio.sleep(1.0)
                proxy.schedule = always(Fault.PASS)
                healed = time.monotonic()
                while (await outbox.stats()).backlog_events:
                    assert time.monotonic() - healed < 15, "sync stalled after a clock jump"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # a heartbeat or two on this clock
                offsets.append(beat.clock_offset_s)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
        events = await asyncio.to_thread(cloud.all_events, STORE)
    finally:
        if outbox is not None:
            await outbox.close()
        await proxy.stop()
        cloud.stop()
    assert [e["payload"]["text"] for e in events] == [_scan(i).text for i in range(n)]
    assert [e["seq"] for e in events] == list(range(1, n + 1)), "seq broke across a jump"
    assert len({e["event_id"] for e in events}) == n
    # The jumps reached capture: occurred_at follows the wall clock, backwards too...
    occurred = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert occurred[80] < occurred[79] - timedelta(hours=25)
    assert all(abs(a - b) < timedelta(seconds=5) for a, b in zip(occurred, stamps, strict=True))
    # ...and each heartbeat measured the skew against the cloud, for the console to show.
    expected = [0.0, -7200.0, 24 * 3600.0, 0.0]
    assert all(o is not None for o in offsets), offsets
    assert all(abs((o or 0.0) - e) < 5 for o, e in zip(offsets, expected, strict=True)), offsets
    assert proxy.injected["error_before"] > 0, "the outage never happened"
