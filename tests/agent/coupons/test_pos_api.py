"""The POS coupon endpoint over real loopback HTTP: auth, peers, bad bodies, redeem, validate."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from coupon_helpers import Cloud, Store, running_cloud
from pytest_aiohttp import AiohttpClient

from agent.config import CouponSection, PosSection
from agent.coupons.pos_api import MAX_BODY_BYTES, _peer_allowed, create_pos_app, serve_pos

TOKEN = "pos-secret-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path) as running:
        yield running


@pytest.fixture
async def store(cloud: Cloud, tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store(await cloud.enroll("store-a"), tmp_path / "store-a", CouponSection())
    await opened.open()
    await opened.refresh_config()
    yield opened
    await opened.close()


@pytest.fixture
async def pos(aiohttp_client: AiohttpClient, store: Store) -> Any:
    assert store.flow is not None
    return await aiohttp_client(create_pos_app(PosSection(token=TOKEN), store.flow))


async def test_redeem_then_redeem_again(pos: Any, cloud: Cloud, store: Store) -> None:
    campaign = await cloud.campaign()
    (token,) = await cloud.issue(campaign, value=1990)
    assert store.config is not None
    await store.refresh_config()
    check = await pos.post("/v1/coupons/validate", json={"token": token}, headers=AUTH)
    assert check.status == 200
    assert (await check.json())["valid"] is True
    body = {"token": token, "pos_ref": "till-3/receipt-881", "staff_id": "STAFF-0007"}
    first = await pos.post("/v1/coupons/redeem", json=body, headers=AUTH)
    assert first.status == 200
    answer = await first.json()
    assert answer["status"] == "redeemed"
    assert answer["reservation"] == "reserved"
    assert answer["coupon"]["value"] == "19.90 CNY"
    second = await pos.post("/v1/coupons/redeem", json=body, headers=AUTH)
    assert second.status == 409
    assert (await second.json())["reason"] == "already_redeemed_here"
    (redeemed,) = await store.events("coupon.redeemed")
    assert (redeemed["channel"], redeemed["pos_ref"], redeemed["staff_id"]) == (
        "pos", "till-3/receipt-881", "STAFF-0007"
    )  # fmt: skip
    after = await pos.post("/v1/coupons/validate", json={"token": token}, headers=AUTH)
    assert (await after.json())["reason"] == "already_redeemed_here"


async def test_bad_token_is_422_with_reason(pos: Any, store: Store) -> None:
    response = await pos.post("/v1/coupons/redeem", json={"token": "SE1.AAAA"}, headers=AUTH)
    assert response.status == 422
    assert (await response.json())["reason"] == "bad_format"
    assert len(await store.events("coupon.rejected")) == 1


async def test_requests_without_the_token_are_refused_and_counted(pos: Any, store: Store) -> None:
    cases = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
    for headers in cases:
        response = await pos.post("/v1/coupons/redeem", json={"token": "x"}, headers=headers)
        assert response.status == 401
        assert "bearer" in (await response.json())["error"]
    health = await pos.get("/healthz", headers=AUTH)
    assert (await health.json())["counters"]["refused_token"] == 3
    assert await store.events("coupon.rejected") == []  # nothing reached the flow


async def test_malformed_bodies_get_a_clear_400(pos: Any) -> None:
    bodies: list[bytes] = [b"", b"not json", b"[]", b'{"token": 5}', b'{"tok": "x"}',
                           b'{"token": "x", "staff_id": "has spaces"}']  # fmt: skip
    for body in bodies:
        response = await pos.post("/v1/coupons/redeem", data=body, headers=AUTH)
        assert response.status == 400, body
        assert (await response.json())["error"]
    huge = b'{"token": "' + b"A" * MAX_BODY_BYTES + b'"}'
    response = await pos.post("/v1/coupons/redeem", data=huge, headers=AUTH)
    assert response.status == 413
    assert (await pos.get("/v1/coupons/redeem", headers=AUTH)).status == 405


def test_peers_outside_loopback_and_allowed_networks_are_refused() -> None:
    assert _peer_allowed("127.0.0.1", [])
    assert _peer_allowed("::1", [])
    assert not _peer_allowed("192.168.10.20", [])
    assert _peer_allowed("192.168.10.20", ["192.168.10.0/24"])
    assert not _peer_allowed("192.168.11.20", ["192.168.10.0/24"])
    assert not _peer_allowed(None, [])
    assert not _peer_allowed("not-an-ip", ["0.0.0.0/0"])


async def test_serves_on_the_configured_loopback_port(store: Store) -> None:
    assert store.flow is not None
    settings = PosSection(token=TOKEN, port=_free_port())
    async with serve_pos(settings, store.flow), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{settings.port}/healthz"
        async with session.get(url, headers=AUTH) as response:
            assert response.status == 200


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_taken_pos_port_is_retried_and_never_stops_the_coupon_service(
    cloud: Cloud, store: Store, tmp_path: Path
) -> None:
    import asyncio
    import contextlib
    import socket

    from agent.config import AgentConfig, CloudSection
    from agent.coupons.service import CouponService

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    config = AgentConfig(cloud=CloudSection(url=cloud.url), pos=PosSection(token=TOKEN, port=port))
    assert store.outbox is not None
    (tmp_path / "svc").mkdir()
    service = CouponService(config, store.credentials, store.outbox, tmp_path / "svc")
    task = asyncio.create_task(service.run())
    try:
        async with asyncio.timeout(10):
            while not (service.flow.counters["pos_bind_failures"] and service.poller.last_ok_at):
                await asyncio.sleep(0.02)  # the config still arrives while the port is taken
            squatter.close()
            while service.pos_url is None:
                await asyncio.sleep(0.05)
        assert service.pos_url == f"http://127.0.0.1:{port}"
    finally:
        squatter.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
