"""The agent talks to the cloud over verified TLS only: a self-made CA, a real TLS server.

Right CA: enrollment, sync, heartbeats and coupon config work. Wrong CA, the system store
alone, an expired certificate or one for another host name: refused, never bypassed. A
redirect never moves the agent to plain http, and plain http off loopback is refused at
config load and by `agent enroll` / `agent run` before a byte is sent.
"""

import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from agent.config import parse_config
from agent.coupons.errors import CloudUnreachable
from agent.coupons.remote import CouponCloud
from agent.credentials import EnrollmentError, enroll
from agent.errors import ConfigError
from agent.sync.client import Credentials, IngestClient, MisconfiguredError, RetryableError
from agent.tls import check_cloud_url, client_ssl_context
from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.fleet import issue_enroll_code
from cloud.keys import STORAGE
from protocol.wire import Heartbeat

STORE = "store-tls"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@asynccontextmanager
async def _tls_cloud(tmp_path: Path, cert: trustme.LeafCert) -> AsyncIterator[tuple[str, str]]:
    """The real cloud app behind TLS on 127.0.0.1; yields (url, a fresh enrollment code)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    app = create_app(CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", port=0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
    await site.start()
    try:
        code = (await issue_enroll_code(app[STORAGE], STORE)).code
        yield f"https://127.0.0.1:{runner.addresses[0][1]}", code
    finally:
        await runner.cleanup()


def _heartbeat() -> Heartbeat:
    return Heartbeat(sent_at=datetime.now(UTC), version="t", backlog_events=0, backlog_bytes=0)


async def test_right_ca_enrolls_syncs_and_fetches_coupon_config(
    ca: trustme.CA, bundle: Path, tmp_path: Path
) -> None:
    async with _tls_cloud(tmp_path, ca.issue_cert("127.0.0.1")) as (url, code):
        context = client_ssl_context(bundle)
        credentials = await enroll(url, code, ssl_context=context)
        client = IngestClient(credentials, timeout_s=5, ssl_context=context)
        coupons = CouponCloud(credentials, context)
        try:
            answer = await client.post_heartbeat(_heartbeat())
            config, etag = await coupons.fetch_config(None)
        finally:
            await client.close()
            await coupons.close()
    assert answer.agent_id == credentials.agent_id
    assert config is not None
    assert etag


def _other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


_EXPIRED = {"not_before": datetime.now(UTC) - timedelta(days=30),
            "not_after": datetime.now(UTC) - timedelta(days=1)}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "identity", "dates", "trust", "expected"),
    [
        ("wrong CA", "127.0.0.1", {}, _other_ca, "certificate verify failed"),
        ("system CAs only", "127.0.0.1", {}, lambda tmp: None, "certificate verify failed"),
        ("expired", "127.0.0.1", _EXPIRED, None, "certificate has expired"),
        ("other host", "cloud.example", {}, None, "IP address mismatch"),
    ],
)
async def test_bad_certificates_are_refused_everywhere(
    ca: trustme.CA,
    bundle: Path,
    tmp_path: Path,
    case: str,
    identity: str,
    dates: dict[str, datetime],
    trust: Callable[[Path], Path | None] | None,
    expected: str,
) -> None:
    cert = ca.issue_cert(identity, **dates)  # type: ignore[arg-type]
    pinned = bundle if trust is None else trust(tmp_path)
    context = client_ssl_context(pinned)
    async with _tls_cloud(tmp_path, cert) as (url, code):
        with pytest.raises(EnrollmentError, match=expected):
            await enroll(url, code, ssl_context=context)
        credentials = Credentials(url, "agt-1", STORE, "token")
        client = IngestClient(credentials, timeout_s=5, ssl_context=context)
        coupons = CouponCloud(credentials, context)
        try:
            with pytest.raises(RetryableError, match=expected):
                await client.post_heartbeat(_heartbeat())
            with pytest.raises(CloudUnreachable, match=expected):
                await coupons.fetch_config(None)
        finally:
            await client.close()
            await coupons.close()


async def test_a_redirect_to_plain_http_is_never_followed(ca: trustme.CA, bundle: Path) -> None:
    plain_hits: list[str] = []

    async def plain(request: web.Request) -> web.Response:
        plain_hits.append(request.path)
        return web.json_response({"results": []})

    plain_app = web.Application()
    plain_app.router.add_route("*", "/{tail:.*}", plain)
    plain_runner = web.AppRunner(plain_app, access_log=None)
    await plain_runner.setup()
    await web.TCPSite(plain_runner, "127.0.0.1", 0).start()
    plain_url = f"http://127.0.0.1:{plain_runner.addresses[0][1]}"

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(plain_url + request.path)

    tls_app = web.Application()
    tls_app.router.add_route("*", "/{tail:.*}", redirect)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    tls_runner = web.AppRunner(tls_app, access_log=None)
    await tls_runner.setup()
    await web.TCPSite(tls_runner, "127.0.0.1", 0, ssl_context=server).start()
    url = f"https://127.0.0.1:{tls_runner.addresses[0][1]}"
    context = client_ssl_context(bundle)
    client = IngestClient(Credentials(url, "agt-1", STORE, "secret-token"), 5, context)
    try:
        with pytest.raises(MisconfiguredError, match="HTTP 307"):
            await client.post_events(b"\x1f\x8b")
        with pytest.raises(EnrollmentError, match="HTTP 307"):
            await enroll(url, "code-1234", ssl_context=context)
    finally:
        await client.close()
        await tls_runner.cleanup()
        await plain_runner.cleanup()
    assert plain_hits == [], "the agent followed a redirect to plain http"


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("https://ingest.example.com", False, True),
        ("http://127.0.0.1:8080", False, True),
        ("http://127.8.9.10", False, True),
        ("http://[::1]:8080", False, True),
        ("http://localhost:8080", False, True),
        ("http://ingest.example.com", False, False),
        ("http://192.168.10.5:8080", False, False),
        ("http://ingest.example.com", True, True),
        ("ftp://ingest.example.com", True, False),
    ],
)
def test_plain_http_only_to_loopback_unless_allowed(url: str, allowed: bool, ok: bool) -> None:
    text = f'[cloud]\nurl = "{url}"\nallow_plaintext = {str(allowed).lower()}\n'
    if ok:
        assert parse_config(text).cloud.url == url
        assert check_cloud_url(url, allowed) == url
    else:
        with pytest.raises(ConfigError, match=r"agent.toml:2: cloud.url: "):
            parse_config(text)


def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    for path in (garbage, tmp_path / "missing.pem"):
        with pytest.raises(ConfigError, match=r"cloud\.ca_bundle: cannot load"):
            client_ssl_context(path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_enroll_and_run_refuse_plain_http_off_loopback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = _cli("agent", "enroll", "--cloud", "http://cloud.example", "--code", "abcd-1234",
                "--state-dir", str(state))  # fmt: skip
    assert done.returncode == 2
    assert "plain http to a non-loopback host" in done.stderr
    assert not state.exists(), "nothing may be saved from a refused enrollment"
    # Credentials saved by an older version (or by hand) with a plain URL: run refuses too.
    state.mkdir()
    (state / "credentials.json").write_text(json.dumps({
        "cloud_url": "http://cloud.example", "agent_id": "agt-1", "store_id": STORE,
        "token": "t",
    }))  # fmt: skip
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{state}"\n[cloud]\nurl = "https://cloud.example"\n')
    done = _cli("agent", "run", "--config", str(config))
    assert done.returncode == 2
    assert "credentials: 'http://cloud.example' is plain http" in done.stderr
