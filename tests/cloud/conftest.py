"""Fixtures for the cloud tests: a real app on loopback HTTP over SQLite in tmp_path."""

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cloud_helpers import ADMIN_TOKEN, MAX_BODY_BYTES, STORE, Agent, Client, new_code
from pytest_aiohttp import AiohttpClient

from cloud.app import create_app
from cloud.config import CloudConfig


@pytest.fixture
def config(tmp_path: Path) -> CloudConfig:
    return CloudConfig(
        db_url=f"sqlite:///{tmp_path / 'cloud.db'}",
        admin_token=ADMIN_TOKEN,
        port=0,
        max_body_bytes=MAX_BODY_BYTES,
    )


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: CloudConfig) -> Client:
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
