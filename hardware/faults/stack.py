"""Real `storeedge` processes to inject faults into: cloud replicas and agents, killable with -9."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STOREEDGE = [sys.executable, "-m", "agent.cli.main"]
ADMIN_TOKEN = "chaos-admin-token"
_ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
# A cloud replica or an agent that is not up in this long is broken, not slow.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class StackError(Exception):
    """A process of the stack did not start, stop or answer as it must."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll `predicate` every 50 ms until true, else raise StackError(`message`)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StackError(message)
        time.sleep(0.05)


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    """Run one `storeedge` command to completion; its stdout, or StackError with stderr."""
    done = subprocess.run(
        [*STOREEDGE, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if done.returncode != 0:
        raise StackError(f"storeedge {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


class _Process:
    """A child process the harness can SIGKILL (counted) or SIGTERM and wait for."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL at whatever it is doing: no cleanup, no goodbye."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)
            self.proc = None
            self.kills += 1

    def terminate(self) -> int:
        """SIGTERM and wait; the exit code (0 when already stopped)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None
        return code


class CloudReplica(_Process):
    """One `storeedge cloud serve` process on a fixed loopback port; restartable, killable."""

    def __init__(self, db_url: str, port: int, log: Path) -> None:
        self.db_url = db_url
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        super().__init__()

    def start(self) -> None:
        """Spawn and wait until /healthz answers."""
        env = {**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN_TOKEN}
        argv = [*STOREEDGE, "cloud", "serve", "--db", self.db_url, "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until(self.healthy, START_TIMEOUT_S, f"cloud did not come up, see {self.log}")

    def healthy(self) -> bool:
        """/healthz answers 200."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (0 when already stopped)."""
        return self.terminate()


@dataclass
class Cloud:
    """The replicas of one cloud deployment over one database, and its admin API."""

    db_url: str
    replicas: list[CloudReplica]

    @property
    def urls(self) -> list[str]:
        """Every replica's base URL."""
        return [replica.url for replica in self.replicas]

    def start(self) -> None:
        """Start every replica that is not running."""
        for replica in self.replicas:
            if not replica.running:
                replica.start()

    def stop(self) -> None:
        """SIGTERM every replica."""
        for replica in self.replicas:
            replica.stop()

    def enroll_code(self, store_id: str) -> str:
        """A single-use enrollment code for `store_id`, made against the database directly."""
        return run_cli("cloud", "enroll-code", "--store", store_id, "--db", self.db_url).strip()

    def admin(self, path: str, body: Any = None, timeout: float = 30) -> Any:
        """Call the admin API on the first replica that answers."""
        data = None if body is None else json.dumps(body).encode()
        last: Exception | None = None
        for replica in self.replicas:
            request = urllib.request.Request(
                replica.url + path,
                data=data,
                headers=_ADMIN_HEADERS,
                method="GET" if body is None else "POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return json.loads(response.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = exc
        raise StackError(f"no cloud replica answered {path}: {last}")

    def all_events(self, store_id: str) -> list[dict[str, Any]]:
        """Every event the cloud holds for `store_id`, paging through the admin API."""
        events: list[dict[str, Any]] = []
        after = None
        while True:
            query = f"/api/events?store_id={store_id}&limit=1000"
            page = self.admin(query + (f"&after={after}" if after is not None else ""))
            events += [item["event"] for item in page["events"]]
            after = page["next_after"]
            if after is None:
                return events

    def count(self, store_id: str) -> int:
        """How many events the cloud holds for `store_id` (-1 when no replica answers)."""
        try:
            count: int = self.admin(f"/api/events/count?store_id={store_id}", timeout=5)["count"]
        except StackError:
            return -1
        return count


# Makes a Cloud in a work dir: the SQLite one below, or PostgreSQL with several replicas.
CloudFactory = Callable[[Path], Cloud]


def sqlite_cloud(workdir: Path, replicas: int = 1) -> Cloud:
    """A cloud on a SQLite file in `workdir` (one replica: SQLite has one writer)."""
    db_url = f"sqlite:///{workdir / 'cloud.db'}"
    return Cloud(
        db_url,
        [CloudReplica(db_url, free_port(), workdir / f"cloud-{i}.log") for i in range(replicas)],
    )


def database_cloud(db_url: str, replicas: int) -> CloudFactory:
    """A factory for `replicas` stateless cloud processes sharing the database at `db_url`."""

    def make(workdir: Path) -> Cloud:
        logs = [workdir / f"cloud-{i}.log" for i in range(replicas)]
        return Cloud(db_url, [CloudReplica(db_url, free_port(), log) for log in logs])

    return make


class AgentProc(_Process):
    """`storeedge agent run --config FILE`, optionally under an extra environment (libfaketime)."""

    def __init__(self, config: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = dict(env or {})
        self.starts = 0
        super().__init__()

    def start(self) -> None:
        """Spawn (readiness is the caller's to judge: devices, POS endpoint, outbox)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*STOREEDGE, "agent", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        self.starts += 1


@dataclass(frozen=True, slots=True)
class OutboxState:
    """The agent's outbox read from outside (WAL allows a reader beside the writer)."""

    next_seq: int
    backlog: int
    dead_letters: int
    dead_kinds: dict[str, int]
    losses: dict[str, int]


def outbox_state(path: Path) -> OutboxState:
    """Read the outbox at `path`; an absent or half-created file reads as empty."""
    empty = OutboxState(1, 0, 0, {}, {})
    if not path.exists():
        return empty
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return OutboxState(
            next_seq=int(row[0]) if row else 1,
            backlog=conn.execute("SELECT count(*) FROM outbox").fetchone()[0],
            dead_letters=conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0],
            dead_kinds=dict(
                conn.execute("SELECT kind, count(*) FROM dead_letter GROUP BY kind").fetchall()
            ),
            losses=dict(conn.execute("SELECT reason, count FROM losses").fetchall()),
        )
    except sqlite3.DatabaseError:  # being created, or damaged (the agent will quarantine it)
        return empty
    finally:
        conn.close()
