"""`storeedge cloud …` as an operator runs it: real subprocesses where the CLI tree imports."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cloud.credentials import normalize_code

STOREEDGE = [sys.executable, "-m", "agent.cli.main"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STOREEDGE, *args], capture_output=True, text=True, timeout=30, env=env)


def test_enroll_code_prints_only_the_code(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    done = run("cloud", "enroll-code", "--store", "store-1", "--db", db_url)
    assert done.returncode == 0, done.stderr
    code = done.stdout.strip()
    assert done.stdout == code + "\n"
    assert len(normalize_code(code)) == 16
    assert "store-1 (new store)" in done.stderr
    again = run("cloud", "enroll-code", "--store", "store-1", "--db", db_url, "--ttl-hours", "1")
    assert again.returncode == 0
    assert again.stdout.strip() != code
    assert "(new store)" not in again.stderr


@pytest.mark.parametrize("store", ["has space", "x" * 65, "ünïcode"])
def test_enroll_code_refuses_a_bad_store_id(tmp_path: Path, store: str) -> None:
    done = run("cloud", "enroll-code", "--store", store, "--db", f"sqlite:///{tmp_path}/c.db")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "invalid store id" in done.stderr


def test_serve_reports_an_unreachable_database() -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    done = run("cloud", "serve", "--db", "postgresql://postgres@127.0.0.1:1/x", "--port", "0")
    assert done.returncode == 2
    assert "error: cannot open database" in done.stderr


def test_serve_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run("cloud", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--port", str(port))
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ}
    env.pop("STOREEDGE_ADMIN_TOKEN", None)
    proc = subprocess.Popen(
        [
            *STOREEDGE,
            "cloud",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'c.db'}",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "cloud serve did not come up"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stderr.count("admin token (set $STOREEDGE_ADMIN_TOKEN") == 1
    # Storage closed cleanly: SQLite removes the WAL file when the last connection closes.
    assert not (tmp_path / "c.db-wal").exists()
