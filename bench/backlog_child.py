"""The agent side of bench/backlog, alone in its process (it imports only the agent):
capture and drain rates at growing backlogs, then the whole backlog drained, and RSS.

`PATH URL AGENT STORE TOKEN WINDOW B1 B2 …` prints one JSON object.
"""

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from bench.memory import rss_now_mb, rss_peak_mb
from protocol import ScanPayload

# bench/outbox's scan, repeated: importing bench.outbox would load rich and count in the RSS.
PAYLOAD = ScanPayload(
    raw_b64="XUUwNDAwNjM4MTMzMzkzMQ==",
    text="4006381333931",
    aim_id="]E0",
    symbology="EAN-13",
    classification="product",
)
PRODUCERS = 200  # as bench/outbox: concurrent captures, so group commit works as in a store
FILL_BURST = 1000
POLL_S = 0.02
BATCH = 500


async def fill_to(outbox: Outbox, backlog: int) -> None:
    """Capture (untimed) until the outbox holds `backlog` events."""
    while (missing := backlog - (await outbox.stats()).backlog_events) > 0:
        burst = min(FILL_BURST, missing)
        await asyncio.gather(*(outbox.append("scanner-front", PAYLOAD) for _ in range(burst)))


async def capture(outbox: Outbox, events: int) -> float:
    """Capture `events` from PRODUCERS concurrent producers; events/s."""
    per = events // PRODUCERS

    async def produce() -> None:
        for _ in range(per):
            await outbox.append("scanner-front", PAYLOAD)

    started = time.perf_counter()
    await asyncio.gather(*(produce() for _ in range(PRODUCERS)))
    return per * PRODUCERS / (time.perf_counter() - started)


async def drain_down_to(outbox: Outbox, client: IngestClient, floor: int) -> float:
    """Run the drain worker until the backlog is at most `floor`; events/s drained."""
    worker = DrainWorker(outbox, client, max_events=BATCH, max_bytes=4 * 1024 * 1024)
    before = (await outbox.stats()).backlog_events
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    while (after := (await outbox.stats()).backlog_events) > floor:
        await asyncio.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if worker.counters.rejected:
        raise SystemExit(f"{worker.counters.rejected} events rejected")
    return (before - after) / elapsed


async def run(path: Path, credentials: Credentials, window: int, backlogs: list[int]) -> Any:
    """Each backlog B: capture `window` on top of B, then drain back to B; then drain all."""
    identity = Identity(credentials.agent_id, credentials.store_id)
    outbox = await Outbox.open(path, identity)
    client = IngestClient(credentials)
    points = []
    for backlog in backlogs:
        await fill_to(outbox, backlog)
        capture_rate = await capture(outbox, window)
        drain_rate = await drain_down_to(outbox, client, backlog)
        points.append({"backlog": backlog, "capture_per_s": capture_rate,
                       "drain_per_s": drain_rate, "rss_mb": rss_now_mb()})  # fmt: skip
    full = (await outbox.stats()).backlog_events
    rss_full = rss_now_mb()
    full_rate = await drain_down_to(outbox, client, 0)
    await client.close()
    await outbox.close()
    return {
        "points": points,
        "full_backlog": full,
        "full_drain_per_s": full_rate,
        "rss_full_mb": rss_full,
        "rss_end_mb": rss_now_mb(),
        "peak_rss_mb": rss_peak_mb(),
    }


def main(argv: list[str]) -> None:
    """Parse the positional arguments of the module docstring, run, print JSON."""
    path, url, agent_id, store_id, token, window, *backlogs = argv
    credentials = Credentials(url, agent_id, store_id, token)
    result = asyncio.run(run(Path(path), credentials, int(window), [int(b) for b in backlogs]))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
