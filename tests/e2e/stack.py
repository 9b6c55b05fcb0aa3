"""Real processes for end-to-end tests: the cloud and the agent as `storeedge` subprocesses."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ADMIN_TOKEN = "e2e-admin-token"
STOREEDGE = [sys.executable, "-m", "agent.cli.main"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run one `storeedge` command to completion; its stdout, or an assertion with stderr."""
    done = subprocess.run([*STOREEDGE, *args], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, f"storeedge {' '.join(args)} failed: {done.stderr}"
    return done.stdout


class CloudProcess:
    """`storeedge cloud serve` on a fixed port, restartable, killable."""

    def __init__(self, db: Path, port: int, log: Path) -> None:
        self.db_url = f"sqlite:///{db}"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN_TOKEN}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*STOREEDGE, "cloud", "serve", "--db", self.db_url, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self.healthy, 20, f"cloud did not come up, see {self.log}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
            self.proc = None

    def admin(self, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def admin_post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def all_events(self, store_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        kind_filter = f"&kind={kind}" if kind else ""
        events: list[dict[str, Any]] = []
        after = None
        while True:
            query = f"/api/events?store_id={store_id}&limit=1000{kind_filter}"
            page = self.admin(query + (f"&after={after}" if after is not None else ""))
            events += [item["event"] for item in page["events"]]
            after = page["next_after"]
            if after is None:
                return events


class AgentProcess:
    """`storeedge agent run` with a given config."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*STOREEDGE, "agent", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.proc = None
        return code


def outbox_state(path: Path) -> dict[str, Any]:
    """Read the agent's outbox from outside (WAL allows a reader beside the writer)."""
    if not path.exists():
        return {"next_seq": 1, "backlog": 0, "dead": 0, "losses": {}}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return {
            "next_seq": int(row[0]) if row else 1,
            "backlog": conn.execute("SELECT count(*) FROM outbox").fetchone()[0],
            "dead": conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0],
            "losses": dict(conn.execute("SELECT reason, count FROM losses").fetchall()),
        }
    except sqlite3.OperationalError:
        return {"next_seq": 1, "backlog": 0, "dead": 0, "losses": {}}
    finally:
        conn.close()


def wait_until(predicate: Any, timeout: float, message: str) -> None:
    """Poll `predicate` every 50 ms until true, else fail with `message`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)
