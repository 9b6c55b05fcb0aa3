"""Shared by the field-engineering tests: a listening notify socket, configs, fake credentials."""

import asyncio
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.credentials import save_credentials
from agent.sync.client import Credentials


class NotifyListener:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"storeedge-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # Short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
            self._dir = tempfile.mkdtemp(prefix="se-n-", dir="/tmp")
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        """Read every datagram waiting; returns (and keeps) them parsed."""
        new = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            new.append(fields)
        self.messages.extend(new)
        return new

    async def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float) -> None:
        """Until a message matching `predicate` arrived (among all so far)."""
        async with asyncio.timeout(timeout):
            while not any(predicate(m) for m in self.messages):
                self.drain()
                await asyncio.sleep(0.02)

    def pings_during(self) -> int:
        """WATCHDOG=1 datagrams received since the last call."""
        return sum(1 for m in self.drain() if m.get("WATCHDOG") == "1")

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
            os.rmdir(self._dir)


def fake_credentials(
    state_dir: Path, cloud_url: str, token: str = "tok-" + "x" * 40
) -> Credentials:
    """Credentials saved as enrollment would, for an agent that need not reach the cloud."""
    credentials = Credentials(cloud_url, "agt-test", "store-test", token)
    save_credentials(state_dir, credentials)
    return credentials


def write_config(path: Path, state_dir: Path, cloud_url: str, extra: str = "") -> Path:
    """An agent.toml with the given state dir and cloud, plus `extra` TOML."""
    path.write_text(
        f'[agent]\nstate_dir = "{state_dir}"\nstall_timeout_s = 5.0\n\n'
        f'[cloud]\nurl = "{cloud_url}"\nheartbeat_interval_s = 0.5\nbackoff_cap_s = 0.5\n\n'
        f"{extra}",
        encoding="utf-8",
    )
    return path


async def until(predicate: Callable[[], Any], timeout: float) -> None:
    """Poll an (async or plain) predicate every 20 ms until true."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)
