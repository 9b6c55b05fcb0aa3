"""The agent side of bench/drain, alone in its process: it imports only the agent, as
`storeedge agent run` would, so its peak RSS is the agent's.

`PATH URL AGENT STORE TOKEN BATCH`: drain the outbox to the cloud until empty; print the rate,
peak RSS and where each batch's time went. `… --latency RATE SECONDS`: capture at RATE events/s
(open loop) while the drain worker works through the backlog; print the capture latencies.
"""

import asyncio
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import agent.sync.drain as drain_module
from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from bench.memory import rss_peak_mb

T = TypeVar("T")


class Phases:
    """Seconds spent in each step of the drain path, summed over the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed

    def wrap_sync(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed


def _instrument(outbox: Outbox, client: IngestClient) -> Phases:
    phases = Phases()
    outbox.read_batch = phases.wrap("read_batch", outbox.read_batch)  # type: ignore[method-assign,assignment]
    outbox.ack = phases.wrap("ack", outbox.ack)  # type: ignore[method-assign,assignment]
    client.post_events = phases.wrap("post", client.post_events)  # type: ignore[method-assign,assignment]
    drain_module._gzip_batch = phases.wrap_sync("gzip", drain_module._gzip_batch)
    return phases


async def drain(path: Path, credentials: Credentials, batch: int) -> dict[str, Any]:
    """Drain `path` to the cloud until empty; events per second and time per step."""
    outbox = await Outbox.open(path, Identity(credentials.agent_id, credentials.store_id))
    client = IngestClient(credentials)
    phases = _instrument(outbox, client)
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
    batches = max(1, worker.counters.batches)
    return {
        "events_per_s": backlog / elapsed,
        "batches": worker.counters.batches,
        "ms_per_batch": {
            "wall": round(elapsed / batches * 1000, 3),
            **{k: round(v / batches * 1000, 3) for k, v in phases.seconds.items()},
        },
    }


async def latency_while_draining(
    path: Path, credentials: Credentials, batch: int, rate: float, seconds: float
) -> dict[str, Any]:
    """Open-loop capture into the outbox the drain worker is emptying, as in the agent."""
    from bench.outbox import open_loop_latency  # the same load generator as bench/outbox

    outbox = await Outbox.open(path, Identity(credentials.agent_id, credentials.store_id))
    # The baseline, same outbox and process, no drain yet: what the drain adds is the gap.
    idle = await open_loop_latency(outbox, rate, seconds)
    client = IngestClient(credentials)
    worker = DrainWorker(outbox, client, max_events=batch, max_bytes=4 * 1024 * 1024)
    before = (await outbox.stats()).backlog_events
    task = asyncio.create_task(worker.run())
    started = time.perf_counter()
    samples = await open_loop_latency(outbox, rate, seconds)
    elapsed = time.perf_counter() - started
    after = (await outbox.stats()).backlog_events
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    await outbox.close()
    return {
        "idle_samples": idle,
        "samples": samples,
        "backlog_before": before,
        "backlog_after": after,
        "drained_per_s": (before + len(samples) - after) / elapsed,
    }


def main(argv: list[str]) -> None:
    """Parse the positional arguments described in the module docstring and run."""
    path, url, agent_id, store_id, token, batch = argv[:6]
    credentials = Credentials(url, agent_id, store_id, token)
    if len(argv) > 6 and argv[6] == "--latency":
        result = asyncio.run(
            latency_while_draining(
                Path(path), credentials, int(batch), float(argv[7]), float(argv[8])
            )
        )
    else:
        result = asyncio.run(drain(Path(path), credentials, int(batch)))
    result["peak_rss_mb"] = rss_peak_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
