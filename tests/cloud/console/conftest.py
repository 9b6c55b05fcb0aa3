"""Console fixtures: the real app on loopback with a cookie jar that keeps Secure cookies."""

import os
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from aiohttp import CookieJar
from pytest_aiohttp import AiohttpClient, AiohttpServer

from cloud.app import create_app
from cloud.config import CloudConfig
from console.console_helpers import FAST, Client

# The backends the page tests run on: both by default (PostgreSQL skips without a server,
# fails with STOREEDGE_REQUIRE_POSTGRES=1); STOREEDGE_CONSOLE_BACKENDS=sqlite narrows them.
PAGE_BACKENDS = tuple(os.environ.get("STOREEDGE_CONSOLE_BACKENDS", "sqlite,postgresql").split(","))


@pytest.fixture(params=PAGE_BACKENDS)
def page_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of one page test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def config(page_db_url: str) -> CloudConfig:
    """The app of the page tests; their agents heartbeat back to back."""
    return CloudConfig(
        db_url=page_db_url, admin_token="t", port=0, console=FAST, heartbeat_min_interval_s=0
    )


@pytest.fixture
async def client(
    config: CloudConfig, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> Client:
    # config first: fixtures tear down in reverse, so the app closes before its database goes
    # (a PostgreSQL schema dropped under a live app waits on its open transactions forever).
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
