"""Fixtures for the cloud tests: a real app on loopback HTTP, storage of either backend.

The one rule about PostgreSQL lives here (`postgres_server`): without a server its tests
skip, but with STOREEDGE_REQUIRE_POSTGRES=1 (`.ci/run` sets it) that skip is a failure.
Each session makes a database `storeedge_t_<random>` of its own and drops it after, so
concurrent test runs on one server never meet.
"""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from cloud_helpers import ADMIN_TOKEN, MAX_BODY_BYTES, STORE, Agent, Client, new_code
from pytest_aiohttp import AiohttpClient

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.storage import Storage, open_storage
from cloud.storage.coupons import CouponStorage, coupon_storage_for

# Where to create the session database; the default is this machine's local server.
POSTGRES_ENV = "STOREEDGE_TEST_POSTGRES"
REQUIRE_ENV = "STOREEDGE_REQUIRE_POSTGRES"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str, **query: str) -> str:
    """`url` pointing at another database, with optional query settings."""
    parts = urlsplit(url)
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", params, ""))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a fresh database `storeedge_t_<random>` for this session, dropped at the end."""
    server = os.environ.get(POSTGRES_ENV, DEFAULT_SERVER)
    name = f"storeedge_t_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(server, f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        reason = f"no PostgreSQL at {server}: {exc}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    try:
        yield with_database(server, name)
    finally:
        asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextmanager
def postgres_schema(server: str) -> Iterator[str]:
    """A database URL whose tables live in a fresh schema (search_path), dropped after."""
    schema = f"t_{secrets.token_hex(6)}"
    asyncio.run(_admin(server, f"CREATE SCHEMA {schema}"))
    try:
        yield with_database(server, urlsplit(server).path[1:], search_path=schema)
    finally:
        asyncio.run(_admin(server, f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL of this test alone."""
    with postgres_schema(postgres_server) as url:
        yield url


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend: a file in tmp_path, or a schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    # Only the session-wide server is looked up lazily (so SQLite runs never need it); the
    # schema is this fixture's own, so it outlives every app built on it.
    server: str = request.getfixturevalue("postgres_server")
    with postgres_schema(server) as url:
        yield url


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    """The storage of `db_url`, opened (and migrated) for a storage-level test, closed after."""
    opened = await open_storage(db_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def coupons(storage: Storage) -> CouponStorage:
    """The coupon storage in the same database as `storage`."""
    return coupon_storage_for(storage)


@pytest.fixture
def config(db_url: str) -> CloudConfig:
    """The API under test, once over each backend; heartbeats may come back to back."""
    return CloudConfig(
        db_url=db_url,
        admin_token=ADMIN_TOKEN,
        port=0,
        max_body_bytes=MAX_BODY_BYTES,
        heartbeat_min_interval_s=0,
    )


@pytest.fixture
async def client(config: CloudConfig, aiohttp_client: AiohttpClient) -> Client:
    # config first: fixtures tear down in reverse, so the app closes before its database goes.
    return await aiohttp_client(create_app(config))


@pytest.fixture
def enroll(client: Client) -> Callable[..., Awaitable[Agent]]:
    async def enroll(store_id: str = STORE) -> Agent:
        code = await new_code(client, store_id)
        response = await client.post("/v1/enroll", json={"code": code})
        assert response.status == 200, await response.text()
        data = await response.json()
        return Agent(data["agent_id"], data["store_id"], data["token"])

    return enroll


@pytest.fixture
async def agent(enroll: Callable[..., Awaitable[Agent]]) -> Agent:
    return await enroll()
