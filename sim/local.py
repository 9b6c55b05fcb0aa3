"""A throwaway local cloud for `sim fleet` runs that name none."""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

START_TIMEOUT_S = 30.0


@contextmanager
def local_cloud(
    clouds: list[str] | None, db_url: str | None, token: str | None
) -> Iterator[tuple[list[str], str]]:
    """The given URLs as they are, or a `storeedge cloud serve` child; (urls, admin token)."""
    if clouds:
        assert token is not None
        yield clouds, token
        return
    token = token or secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="storeedge-sim-") as tmp:
        db = db_url or f"sqlite:///{tmp}/cloud.db"
        port = _free_port()
        log = open(os.path.join(tmp, "cloud.log"), "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "cloud", "serve", "--db", db,
             "--port", str(port)],
            env={**os.environ, "STOREEDGE_ADMIN_TOKEN": token},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url, proc)
            yield [url], token
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait(url: str, proc: "subprocess.Popen[bytes]") -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local cloud exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the local cloud did not come up")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
