"""A throwaway PostgreSQL database for one benchmark run, and the cloud as a child process."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson

SERVER = os.environ.get("STOREEDGE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN = "bench-admin"  # the admin token of the cloud processes started here


@contextmanager
def scratch_database() -> Iterator[str]:
    """URL of a new database `storeedge_bench_<random>`, dropped on exit."""
    name = f"storeedge_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    base = SERVER.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30) -> None:
    """Return once `url` answers 200; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def cloud_process(db_url: str, *extra: str, log: Path | None = None) -> Iterator[tuple[str, int]]:
    """`storeedge cloud serve` on a free port; yields (url, pid), SIGTERM on exit."""
    port = free_port()
    env = {**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN}
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.main", "cloud", "serve", "--db", db_url,
         "--port", str(port), *extra],
        env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz")
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if log and not isinstance(out, int):
            out.close()


def rss_mb_of(pid: int) -> float:
    """Resident set size of a running process, in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb_of(pid: int) -> float:
    """Peak resident set size of a running process, in MB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def admin_post(url: str, path: str, body: dict[str, Any]) -> Any:
    """POST JSON with the bench admin token; the decoded answer."""
    request = urllib.request.Request(
        url + path,
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return orjson.loads(response.read())
