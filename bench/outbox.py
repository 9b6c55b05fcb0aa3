"""bench/outbox: durable capture rate and latency, beside the raw SQLite limit (issue 2, 9)."""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.outbox import Identity, Outbox
from agent.outbox.store import connect
from bench.common import percentiles, report
from protocol import ScanEvent, ScanPayload, uuid7

IDENTITY = Identity("agent-bench", "store-bench")
PAYLOAD = ScanPayload(
    raw_b64="XUUwNDAwNjM4MTMzMzkzMQ==",
    text="4006381333931",
    aim_id="]E0",
    symbology="EAN-13",
    classification="product",
)


def raw_sqlite_rate(path: Path, events: int, batch: int) -> float:
    """Pre-serialized rows, executemany in transactions of `batch`: SQLite's own ceiling."""
    conn = connect(path, "FULL")
    conn.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT, kind TEXT, "
        "droppable INTEGER, created_at REAL, body BLOB)"
    )
    body = _sample_body()
    rows = [(i, str(uuid7()), "scan", 1, time.time(), body) for i in range(1, events + 1)]
    started = time.perf_counter()
    for start in range(0, events, batch):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)", rows[start : start + batch]
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return events / elapsed


def _sample_body() -> bytes:
    from datetime import UTC, datetime

    event = ScanEvent(
        event_id=uuid7(),
        agent_id=IDENTITY.agent_id,
        store_id=IDENTITY.store_id,
        seq=1,
        device_id="scanner-front",
        occurred_at=datetime.now(UTC),
        payload=PAYLOAD,
    )
    return event.model_dump_json().encode()


async def outbox_rate(path: Path, events: int, producers: int) -> float:
    """`producers` concurrent tasks append until `events` are durable; events/s."""
    outbox = await Outbox.open(path, IDENTITY)
    per_producer = events // producers

    async def produce() -> None:
        for _ in range(per_producer):
            await outbox.append("scanner-front", PAYLOAD)

    started = time.perf_counter()
    await asyncio.gather(*(produce() for _ in range(producers)))
    elapsed = time.perf_counter() - started
    await outbox.close()
    return per_producer * producers / elapsed


async def outbox_latency(path: Path, rate: float, seconds: float) -> list[float]:
    """Open-loop load: one append started every 1/rate s; latency from its scheduled start."""
    outbox = await Outbox.open(path, IDENTITY)
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    interval = 1 / rate
    start = loop.time() + 0.1

    async def one(scheduled: float) -> None:
        await outbox.append("scanner-front", PAYLOAD)
        samples.append(loop.time() - scheduled)

    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i * interval
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    await outbox.close()
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the outbox benchmark and write bench/results/outbox.json."""
    parser = argparse.ArgumentParser(prog="bench.outbox")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        tmpdir = Path(tmp)
        raw = raw_sqlite_rate(tmpdir / "raw.db", args.events, 1000)
        ours = asyncio.run(outbox_rate(tmpdir / "rate.db", args.events, args.producers))
        latency = percentiles(
            asyncio.run(outbox_latency(tmpdir / "lat.db", args.rate, args.seconds))
        )
    rows = [
        {"what": "raw SQLite executemany, 1000/txn, FULL", "events_per_s": round(raw)},
        {
            "what": f"outbox.append, {args.producers} producers, FULL, group commit",
            "events_per_s": round(ours),
            "vs_raw": f"{ours / raw:.0%}",
        },
        {"what": f"capture latency at {args.rate:.0f}/s offered", **latency},
    ]
    extra = {
        "durable_events_per_s": ours,
        "raw_sqlite_events_per_s": raw,
        "latency_at_rate": latency,
        "goal": {"durable_events_per_s": 20_000, "p99_ms": 5},
    }
    report("outbox", "bench/outbox — durable capture (synchronous=FULL)", rows, extra)
    return extra


if __name__ == "__main__":
    main()
