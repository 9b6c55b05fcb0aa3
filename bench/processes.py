"""Child processes of the benchmarks: the cloud, the agent's drain, fills, a git tree."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from agent.outbox import Identity, Outbox
from bench.outbox import PAYLOAD

ADMIN = "bench-admin"
BATCH = 500  # events per drain batch, the agent's default
REPO = Path(__file__).resolve().parent.parent


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(src: Path | None) -> dict[str, str]:
    """The environment of a child running the code in `src` (None: this checkout)."""
    env = {**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


@contextmanager
def cloud(db: Path, src: Path | None = None, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """`storeedge cloud serve` on `db` in its own process (after `prefix`, e.g. taskset)."""
    port = free_port()
    argv = [
        *prefix,
        sys.executable,
        "-m",
        "agent.cli.main",
        "cloud",
        "serve",
        "--db",
        f"sqlite:///{db}",
    ]
    argv += ["--port", str(port)]
    if src is None:
        # The drain is measured, not the per-agent limit (5,000/s by default) that would cap
        # it; older revisions (`src`) predate the limit and its flags.
        argv += ["--agent-rate", "1e9", "--agent-burst", "1e9"]
    proc = subprocess.Popen(
        argv,
        env=_env(src),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=src or REPO,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def _fill(path: Path, identity: Identity, events: int) -> None:
    outbox = await Outbox.open(path, identity)
    for start in range(0, events, 1000):
        n = min(1000, events - start)
        await asyncio.gather(*(outbox.append("scanner-front", PAYLOAD) for _ in range(n)))
    await outbox.close()


def fill(path: Path, identity: Identity, events: int) -> None:
    """Capture `events` scans into `path` in a child process (so no RSS of it counts here)."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys; from pathlib import Path; "
            "from bench.processes import _fill; from agent.outbox import Identity; "
            "asyncio.run(_fill(Path(sys.argv[1]), Identity(sys.argv[2], sys.argv[3]), "
            "int(sys.argv[4])))",
            str(path),
            identity.agent_id,
            identity.store_id,
            str(events),
        ],
        check=True,
    )


def copy_db(src: Path, dst: Path) -> None:
    """Copy a closed SQLite database with its WAL, if any."""
    shutil.copy(src, dst)
    for suffix in ("-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", f"{dst}{suffix}")


def agent_child(
    outbox: Path, url: str, token: str, identity: Identity, *more: str, src: Path | None = None
) -> dict[str, Any]:
    """Run bench/drain_child (of `src`, or this checkout) and return what it printed."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.drain_child",
            str(outbox),
            url,
            identity.agent_id,
            identity.store_id,
            token,
            str(BATCH),
            *more,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=_env(src),
        cwd=src or REPO,
    )
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def before_tree(rev: str, into: Path) -> tuple[Path | None, str]:
    """Extract the tree of git revision `rev`; (None, why) if it cannot be had."""
    try:
        full = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        into.mkdir()
        archive = subprocess.Popen(
            ["git", "-C", str(REPO), "archive", full], stdout=subprocess.PIPE
        )
        subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise subprocess.CalledProcessError(archive.returncode, "git archive")
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"no tree for {rev}: {exc}"
    return into, full
