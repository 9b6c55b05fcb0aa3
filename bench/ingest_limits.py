"""The limits a drain is measured against: HTTP alone, SQLite alone, the cloud's own steps."""

import asyncio
import gc
import gzip
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from agent.outbox import Identity
from agent.outbox.store import connect
from agent.sync.drain import GZIP_LEVEL
from bench.processes import BATCH


def stored_batches(path: Path) -> list[list[bytes]]:
    """The outbox's rows in seq order, cut into the drain's batches."""
    conn = connect(path, "NORMAL")
    rows = [body for (body,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    conn.close()
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def _body(batch: list[bytes]) -> bytes:
    return b'{"events":[' + b",".join(batch) + b"]}"


async def raw_post(url: str, batches: list[list[bytes]]) -> float:
    """The same client work (join, gzip, POST) to an endpoint that only parses and answers."""
    started = time.perf_counter()
    total = 0
    async with aiohttp.ClientSession() as session:
        for batch in batches:
            gzipped = await asyncio.to_thread(gzip.compress, _body(batch), GZIP_LEVEL)
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with session.post(url, data=gzipped, headers=headers) as response:
                assert response.status == 200
                await response.read()
            total += len(batch)
    return total / (time.perf_counter() - started)


def raw_sqlite_ingest(path: Path, batches: list[list[bytes]], identity: Identity) -> float:
    """SQLite's limit for the cloud's ingest: the same rows, already parsed, inserted with
    the permanent dedupe (ON CONFLICT DO NOTHING) into the cloud's own schema, one FULL
    transaction per batch; events/s."""
    from cloud.storage._schema import migrate

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn)
    now = time.time_ns() // 1000
    params = []
    for batch in batches:
        rows = []
        for body in batch:
            event = orjson.loads(body)
            occurred = datetime.fromisoformat(event["occurred_at"])
            rows.append(
                (
                    event["event_id"],
                    identity.agent_id,
                    identity.store_id,
                    event["seq"],
                    event["device_id"],
                    event["kind"],
                    int(occurred.timestamp() * 1e6),
                    now,
                    body.decode(),
                )
            )
        params.append(rows)
    from cloud.storage._sqlite_sql import INSERT_EVENT

    started = time.perf_counter()
    for rows in params:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_EVENT, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return sum(map(len, params)) / elapsed


async def cloud_stages(
    path: Path, batches: list[list[bytes]], identity: Identity
) -> dict[str, float]:
    """The cloud's ingest steps in-process, batch by batch, on its own code; seconds each."""
    from cloud.batch import check_events, decode_body, parse_batch
    from cloud.storage.base import AgentIdentity
    from cloud.storage.sqlite import SqliteStorage

    agent = AgentIdentity(identity.agent_id, identity.store_id)
    storage = await SqliteStorage.open(str(path))
    # This process holds every batch: frozen, they are not walked by each garbage collection
    # the validation triggers, as they would not be in the cloud's own process.
    gc.collect()
    gc.freeze()
    spent = {"gunzip": 0.0, "parse + validate": 0.0, "storage.ingest (FULL)": 0.0, "answer": 0.0}
    try:
        for batch in batches:
            gzipped = gzip.compress(_body(batch), GZIP_LEVEL)
            t0 = time.perf_counter()
            body = decode_body(gzipped, "gzip", 64 * 1024 * 1024)
            t1 = time.perf_counter()
            checked = check_events(parse_batch(body), agent)
            t2 = time.perf_counter()
            stored = await storage.ingest(agent, checked.rows, datetime.now(UTC))
            t3 = time.perf_counter()
            orjson.dumps({"results": checked.complete(stored)})
            t4 = time.perf_counter()
            for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[key] += seconds
    finally:
        gc.unfreeze()
        await storage.close()
    return spent


def serve_raw(port: int) -> None:
    """A no-storage ingest endpoint: gunzip, parse, answer one 'accepted' per event."""

    async def ingest(request: web.Request) -> web.StreamResponse:
        events = orjson.loads(await request.read())["events"]
        return web.Response(
            body=orjson.dumps({"results": [{"status": "accepted"}] * len(events)}),
            content_type="application/json",
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/events", ingest)

    async def health(_: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
