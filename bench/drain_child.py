"""The agent side of bench/drain, alone in its process: drain an outbox, print rate and RSS."""

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker


async def drain(path: Path, credentials: Credentials, batch: int) -> float:
    """Drain `path` to the cloud until empty; events per second."""
    outbox = await Outbox.open(path, Identity(credentials.agent_id, credentials.store_id))
    client = IngestClient(credentials)
    worker = DrainWorker(outbox, client, max_events=batch, max_bytes=4 * 1024 * 1024)
    backlog = (await outbox.stats()).backlog_events
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    while (await outbox.stats()).backlog_events:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    await outbox.close()
    if worker.counters.rejected:
        raise SystemExit(f"{worker.counters.rejected} events rejected")
    return backlog / elapsed


if __name__ == "__main__":
    path, url, agent_id, store_id, token, batch = sys.argv[1:7]
    rate = asyncio.run(drain(Path(path), Credentials(url, agent_id, store_id, token), int(batch)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events_per_s": rate, "peak_rss_mb": peak}))
