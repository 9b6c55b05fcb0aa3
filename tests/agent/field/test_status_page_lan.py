"""The status page seen from the store LAN: a phone in another network namespace.

Two namespaces joined by a veth pair stand in for the box and a phone on the store Wi-Fi
(10.213.7.0/24 exists only inside them). The real `storeedge agent run` listens on 0.0.0.0
in the box's namespace: from the phone it refuses everything without the token; the box's
own loopback needs none.
"""

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from field_helpers import fake_credentials, write_config

BOX, PHONE = "10.213.7.1", "10.213.7.2"
PORT = 8421

# Runs inside a namespace: one request, prints status, Set-Cookie and body as JSON.
CLIENT = r"""
import json, sys, urllib.error, urllib.request
url, headers = sys.argv[1], json.loads(sys.argv[2])
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
opener = urllib.request.build_opener(NoRedirect)
try:
    r = opener.open(urllib.request.Request(url, headers=headers), timeout=5)
except urllib.error.HTTPError as e:
    r = e
print(json.dumps({"status": r.status, "cookie": r.headers.get("Set-Cookie", ""),
                  "body": r.read().decode("utf-8", "replace")[:2000]}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces(require_tool: Callable[..., str]) -> Iterator[tuple[str, str]]:
    require_tool("ip", needs_root=True)
    tag = secrets.token_hex(3)
    box, phone = f"se-box-{tag}", f"se-phone-{tag}"
    _ip("netns", "add", box)
    _ip("netns", "add", phone)
    try:
        _ip("link", "add", f"sb{tag}", "type", "veth", "peer", "name", f"sp{tag}")
        _ip("link", "set", f"sb{tag}", "netns", box)
        _ip("link", "set", f"sp{tag}", "netns", phone)
        for ns, dev, addr in ((box, f"sb{tag}", BOX), (phone, f"sp{tag}", PHONE)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield box, phone
    finally:
        subprocess.run(["ip", "netns", "del", box], capture_output=True)
        subprocess.run(["ip", "netns", "del", phone], capture_output=True)


def _get(ns: str, url: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, url, json.dumps(headers or {})],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_lan_gets_nothing_without_the_token(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    box, phone = namespaces
    state = tmp_path / "state"
    fake_credentials(state, "http://127.0.0.1:9")
    config = write_config(
        tmp_path / "agent.toml",
        state,
        "http://127.0.0.1:9",
        f'[status_page]\nhost = "0.0.0.0"\nport = {PORT}\n',
    )
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            box,
            sys.executable,
            "-m",
            "agent.cli.main",
            "agent",
            "run",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        token_file = state / "statuspage.token"
        deadline = time.monotonic() + 30
        while True:
            if (
                token_file.exists()
                and _get(box, f"http://127.0.0.1:{PORT}/api/status")["status"] == 200
            ):
                break
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()
            assert time.monotonic() < deadline, "the agent's page never came up"
            time.sleep(0.3)
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        lan = f"http://{BOX}:{PORT}"

        # The phone, without or with a wrong token: refused, page and API alike.
        assert _get(phone, lan + "/api/status")["status"] == 401
        assert _get(phone, lan + "/")["status"] == 401
        assert _get(phone, lan + "/api/status?token=wrong")["status"] == 401
        bearer_wrong = {"Authorization": "Bearer " + "x" * len(token)}
        assert _get(phone, lan + "/api/status", bearer_wrong)["status"] == 401

        # With the token: the link swaps it for a cookie, and the cookie opens the API.
        first = _get(phone, f"{lan}/?token={token}")
        assert first["status"] == 303
        cookie = str(first["cookie"]).split(";", 1)[0]
        assert cookie == f"storeedge_token={token}"
        answer = _get(phone, lan + "/api/status", {"Cookie": cookie})
        assert answer["status"] == 200
        doc = json.loads(str(answer["body"]))
        assert doc["agent"]["agent_id"] == "agt-test"
        assert doc["status_page"]["refused"] == {"no_token": 2, "bad_token": 2}
        # The box itself needs no token.
        assert _get(box, f"http://127.0.0.1:{PORT}/api/status")["status"] == 200
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()
    assert token not in (tmp_path / "agent.log").read_text()
