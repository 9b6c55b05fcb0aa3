"""Console fixtures: the real app on loopback with a cookie jar that keeps Secure cookies."""

from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from aiohttp import CookieJar
from pytest_aiohttp import AiohttpClient, AiohttpServer

from cloud.app import create_app
from cloud.config import CloudConfig
from console.console_helpers import FAST, Client


@pytest.fixture
def config(tmp_path: Path) -> CloudConfig:
    """The console under test; heartbeats may come back to back (tests drive agents fast)."""
    return CloudConfig(
        db_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        admin_token="t",
        port=0,
        console=FAST,
        heartbeat_min_interval_s=0,
    )


@pytest.fixture
async def client(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, config: CloudConfig
) -> Client:
    server = await aiohttp_server(create_app(config))
    # Browsers treat loopback as a secure origin and send Secure cookies there; so must we.
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    return cast(Client, await aiohttp_client(server, cookie_jar=jar))


@pytest.fixture
async def other_client(aiohttp_client: AiohttpClient, client: Client) -> Client:
    """A second browser (its own cookies) on the same server."""
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(client.server.make_url("/"))])
    return cast(Client, await aiohttp_client(client.server, cookie_jar=jar))


@pytest.fixture
def fast_config(config: CloudConfig) -> CloudConfig:
    return replace(config, console=replace(FAST, evaluate_every_s=0.1, lease_ttl_s=1.0))
