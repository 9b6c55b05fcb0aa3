"""bench/drain: a backlog synced to a local cloud, beside a no-storage endpoint (issues 2, 9).

The cloud and the raw endpoint each run in their own process, as in production; this process
is the agent, so its peak RSS is the agent's memory while draining.
"""

import argparse
import asyncio
import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from agent.credentials import enroll
from agent.outbox import Identity, Outbox
from agent.outbox.store import connect
from agent.sync.drain import GZIP_LEVEL
from bench.common import report
from bench.outbox import PAYLOAD

ADMIN = "bench-admin"
BATCH = 500


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _fill(path: Path, identity: Identity, events: int) -> None:
    outbox = await Outbox.open(path, identity)
    for start in range(0, events, 1000):
        n = min(1000, events - start)
        await asyncio.gather(*(outbox.append("scanner-front", PAYLOAD) for _ in range(n)))
    await outbox.close()


def _raw_batches(path: Path) -> list[tuple[int, bytes]]:
    conn = connect(path, "NORMAL")
    rows = [body for (body,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    conn.close()
    return [
        (len(chunk), b'{"events":[' + b",".join(chunk) + b"]}")
        for chunk in (rows[i : i + BATCH] for i in range(0, len(rows), BATCH))
    ]


async def _raw_post(url: str, batches: list[tuple[int, bytes]]) -> float:
    """The same client work (join, gzip, POST) to an endpoint that only parses and answers."""
    started = time.perf_counter()
    total = 0
    async with aiohttp.ClientSession() as session:
        for count, body in batches:
            gzipped = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with session.post(url, data=gzipped, headers=headers) as response:
                assert response.status == 200
                await response.read()
            total += count
    return total / (time.perf_counter() - started)


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the drain benchmark and write bench/results/drain.json."""
    parser = argparse.ArgumentParser(prog="bench.drain")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--serve-raw", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_raw:
        serve_raw(args.serve_raw)
        return {}

    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        tmpdir = Path(tmp)
        port, raw_port = _free_port(), _free_port()
        db_url = f"sqlite:///{tmpdir / 'cloud.db'}"
        env = {**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN}
        cloud = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "cloud", "serve", "--db", db_url,
             "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        raw = subprocess.Popen(
            [sys.executable, "-m", "bench.drain", "--serve-raw", str(raw_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz")
            _wait_http(f"http://127.0.0.1:{raw_port}/healthz")
            code = _cli("cloud", "enroll-code", "--store", "store-bench", "--db", db_url)
            credentials = asyncio.run(enroll(f"http://127.0.0.1:{port}", code))
            identity = Identity(credentials.agent_id, credentials.store_id)
            outbox = tmpdir / "outbox.db"
            # Filled in a child process, so this process's peak RSS is the drain's alone.
            subprocess.run(
                [sys.executable, "-c", "import asyncio, sys; from pathlib import Path; "
                 "from bench.drain import _fill; from agent.outbox import Identity; "
                 "asyncio.run(_fill(Path(sys.argv[1]), Identity(sys.argv[2], sys.argv[3]), "
                 "int(sys.argv[4])))", str(outbox), identity.agent_id, identity.store_id,
                 str(args.events)],
                check=True,
            )  # fmt: skip
            copy = tmpdir / "copy.db"
            shutil.copy(outbox, copy)
            for suffix in ("-wal", "-shm"):
                if Path(f"{outbox}{suffix}").exists():
                    shutil.copy(f"{outbox}{suffix}", f"{copy}{suffix}")
            # The drain runs in a child that imports only the agent, as `storeedge agent run`
            # would: its peak RSS is the agent's, not this harness's (rich, subprocess, …).
            child = subprocess.run(
                [sys.executable, "-m", "bench.drain_child", str(outbox), credentials.cloud_url,
                 credentials.agent_id, credentials.store_id, credentials.token, str(BATCH)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            measured = orjson.loads(child.stdout)
            rate, rss = measured["events_per_s"], measured["peak_rss_mb"]
            raw_rate = asyncio.run(
                _raw_post(f"http://127.0.0.1:{raw_port}/v1/events", _raw_batches(copy))
            )
        finally:
            for proc in (cloud, raw):
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    rows = [
        {
            "what": "raw aiohttp POST, same gzipped bytes, no storage",
            "events_per_s": round(raw_rate),
        },
        {
            "what": f"drain {args.events:,} backlog → cloud on SQLite (FULL)",
            "events_per_s": round(rate),
            "vs_raw": f"{rate / raw_rate:.0%}",
            "agent_peak_rss_mb": round(rss, 1),
        },
    ]
    extra = {
        "drain_events_per_s": rate,
        "raw_events_per_s": raw_rate,
        "agent_peak_rss_mb": rss,
        "goal": {"drain_events_per_s": 10_000, "agent_rss_mb": 64, "vs_raw": "50%"},
    }
    report("drain", "bench/drain — backlog to a local cloud", rows, extra)
    return extra


if __name__ == "__main__":
    main()
