"""The coupon flow end to end in-process: real outboxes, the real cloud on loopback, outages."""

import asyncio
import base64
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from coupon_helpers import Cloud, Store, running_cloud
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import CouponSection
from agent.coupons import ledger
from hardware.netfault import Fault, FaultPlan, FaultProxy
from protocol.coupons import encode_token, parse_token


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path) as running:
        yield running


async def open_store(cloud: Cloud, tmp_path: Path, store_id: str, **settings: object) -> Store:
    store = Store(await cloud.enroll(store_id), tmp_path / store_id, CouponSection(**settings))  # type: ignore[arg-type]
    await store.open()
    await store.refresh_config()
    return store


async def test_online_same_coupon_at_two_stores_is_redeemed_exactly_once(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign()
    (token,) = await cloud.issue(campaign)
    a = await open_store(cloud, tmp_path, "store-a")
    b = await open_store(cloud, tmp_path, "store-b")
    first = await a.present(token)
    second = await b.present(token)
    assert (first.status, first.mode) == ("redeemed", "reserved")
    assert (second.status, second.reason) == ("rejected", "already_redeemed_elsewhere")
    assert second.other_store_id == "store-a"
    (rejected,) = await b.events("coupon.rejected")
    assert rejected["reason"] == "already_redeemed_elsewhere"
    assert rejected["other_store_id"] == "store-a"
    assert rejected["coupon_id"] == parse_token(token).claims.coupon_id
    # And the store that has it refuses it again from its own ledger, without asking.
    again = await a.present(token)
    assert (again.status, again.reason) == ("rejected", "already_redeemed_here")
    await a.sync()
    await b.sync()
    _, stats = await cloud.admin("GET", f"/api/campaigns/{campaign}/stats")
    assert (stats["redemptions"], stats["reserved_online"], stats["conflicts"]) == (1, 1, 0)
    assert stats["rejected"] == {"already_redeemed_elsewhere": 1, "already_redeemed_here": 1}
    for store in (a, b):
        await store.close()


async def test_offline_double_redemption_becomes_one_conflict_after_sync(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign(max_offline_value=5000)
    (token,) = await cloud.issue(campaign, value=3000)
    (big,) = await cloud.issue(campaign, value=8000)
    a = await open_store(cloud, tmp_path, "store-a")
    b = await open_store(cloud, tmp_path, "store-b")
    await cloud.stop()  # the outage: both stores keep redeeming under the offline policy
    first = await a.present(token)
    second = await b.present(token)
    assert (first.status, first.mode) == ("redeemed", "offline")
    assert (second.status, second.mode) == ("redeemed", "offline")
    refused = await a.present(big)
    assert (refused.status, refused.reason) == ("rejected", "over_offline_limit")
    assert a.flow is not None
    assert a.flow.reachability.state == "offline"
    await cloud.start()
    await a.sync()
    await b.sync()
    status, page = await cloud.admin("GET", "/api/coupons/conflicts")
    assert status == 200
    (conflict,) = page["conflicts"]
    assert conflict["stores"] == ["store-a", "store-b"]
    assert conflict["coupon_id"] == parse_token(token).claims.coupon_id
    modes = {r["store_id"]: r["mode"] for r in conflict["redemptions"]}
    assert modes == {"store-a": "offline", "store-b": "offline"}
    _, stats = await cloud.admin("GET", f"/api/campaigns/{campaign}/stats")
    assert (stats["redemptions"], stats["offline_redemptions"], stats["conflicts"]) == (2, 2, 1)
    assert stats["rejected"] == {"over_offline_limit": 1}
    for store in (a, b):
        await store.close()


async def test_two_devices_of_one_store_at_once_redeem_once(cloud: Cloud, tmp_path: Path) -> None:
    campaign = await cloud.campaign()
    (token,) = await cloud.issue(campaign)
    store = await open_store(cloud, tmp_path, "store-a", reserve_online=False)
    results = await asyncio.gather(
        *(store.present(token, device_id=f"scanner-{i}") for i in range(8))
    )
    assert sorted(r.status for r in results) == ["redeemed"] + ["rejected"] * 7
    assert {r.reason for r in results if r.status == "rejected"} == {"already_redeemed_here"}
    assert store.outbox is not None
    assert await ledger.count(store.outbox) == 1
    assert len(await store.events("coupon.redeemed")) == 1
    await store.close()


async def test_saved_config_keeps_redeeming_after_a_restart_with_the_cloud_down(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign()
    (token,) = await cloud.issue(campaign, value=1000)
    credentials = await cloud.enroll("store-a")
    first = Store(credentials, tmp_path / "store-a")
    await first.open()
    await first.refresh_config()
    await first.close()
    await cloud.stop()
    restarted = Store(credentials, tmp_path / "store-a")
    await restarted.open()
    await restarted.refresh_config()  # fails: the cloud is down, the saved config stays
    outcome = await restarted.present(token)
    assert (outcome.status, outcome.mode) == ("redeemed", "offline")
    await restarted.close()
    await cloud.start()


async def test_bad_tokens_are_rejected_with_their_reason_and_counted(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign(stores=["store-a", "store-b"])
    (good, elsewhere) = await cloud.issue(campaign, count=2, value=100)
    (narrow,) = await cloud.issue(campaign, value=100, stores=["store-b"])
    store = await open_store(cloud, tmp_path, "store-a", reserve_online=False)
    claims = parse_token(good).claims
    raw = base64.urlsafe_b64decode(good[4:] + "==")
    tampered = bytearray(raw)
    tampered[14] ^= 0x01  # a bit of the coupon id
    resigned = encode_token(claims, Ed25519PrivateKey.generate())
    cases = {
        "SE1." + base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode(): "bad_signature",
        good[: len(good) - 10]: "bad_format",  # truncated
        resigned: "bad_signature",
        narrow: "wrong_store",  # issued for store-b only: replayed across stores
        good + "A" * 300: "bad_format",  # oversized
        "https://example.com/not-a-coupon": "bad_format",
        "SE1.!!!!": "bad_format",
        "SE1.": "bad_format",
    }
    for token, reason in cases.items():
        outcome = await store.present(token)
        assert (outcome.status, outcome.reason) == ("rejected", reason), token
    # A different campaign's key id: unknown key.
    foreign_claims = dataclasses.replace(parse_token(elsewhere).claims, key_id=999_999)
    foreign = encode_token(foreign_claims, Ed25519PrivateKey.generate())
    assert (await store.present(foreign)).reason == "unknown_key"
    assert store.flow is not None
    counters = store.flow.counters
    assert counters["redeemed"] == 0
    assert counters["rejected"] == len(cases) + 1
    assert counters["rejected_bad_format"] == 5
    rejected = await store.events("coupon.rejected")
    assert len(rejected) == len(cases) + 1
    # Forged claims are never named: only the authentic wrong-store rejection has ids.
    named = [r for r in rejected if r["coupon_id"] is not None]
    assert [r["reason"] for r in named] == ["wrong_store"]
    assert all(len(r["token_fingerprint"]) == 16 for r in rejected)
    assert await store.events("coupon.redeemed") == []
    assert (await store.present(good)).status == "redeemed"  # the genuine one still works
    await store.close()


async def test_no_config_yet_is_unknown_key(cloud: Cloud, tmp_path: Path) -> None:
    campaign = await cloud.campaign()
    (token,) = await cloud.issue(campaign)
    store = Store(await cloud.enroll("store-a"), tmp_path / "store-a")
    await store.open()  # never fetched a config
    outcome = await store.present(token)
    assert (outcome.reason, outcome.detail) == (
        "unknown_key",
        "no business config received from the cloud yet",
    )
    await store.close()


async def test_staff_badge_attributes_redemptions_until_logout(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign()
    tokens = await cloud.issue(campaign, count=3, value=100)
    store = await open_store(cloud, tmp_path, "store-a")
    assert store.flow is not None
    await store.flow.badge("scanner-1", "STAFF-0042")
    attributed = await store.present(tokens[0])
    other_device = await store.present(tokens[1], device_id="scanner-2")
    await store.flow.badge("scanner-1", "STAFF-0042")  # the same badge again: logout
    after = await store.present(tokens[2])
    assert [attributed.staff_id, other_device.staff_id, after.staff_id] == [
        "STAFF-0042", None, None
    ]  # fmt: skip
    logins = await store.events("staff.login")
    logouts = await store.events("staff.logout")
    assert [p["staff_id"] for p in logins] == ["STAFF-0042"]
    assert [p["reason"] for p in logouts] == ["logout"]
    redeemed = await store.events("coupon.redeemed")
    assert [p["staff_id"] for p in redeemed] == ["STAFF-0042", None, None]
    await store.close()


async def test_a_slow_cloud_costs_one_short_timeout_then_redeeming_stays_local(
    cloud: Cloud, tmp_path: Path
) -> None:
    campaign = await cloud.campaign()
    tokens = await cloud.issue(campaign, count=3, value=100)
    credentials = await cloud.enroll("store-a")
    # Every reservation is held five times longer than the 300 ms the config allows.
    plan = FaultPlan(rate=1.0, faults=(Fault.SLOW,), paths=("/v1/coupons/reserve",))
    proxy = FaultProxy(cloud.url, plan, slow_s=1.5)
    url = await proxy.start()
    store = Store(dataclasses.replace(credentials, cloud_url=url), tmp_path / "store-a")
    await store.open()
    await store.refresh_config()
    try:
        started = time.monotonic()
        first = await store.present(tokens[0])
        first_s = time.monotonic() - started
        started = time.monotonic()
        second = await store.present(tokens[1])
        second_s = time.monotonic() - started
    finally:
        await store.close()
        await proxy.stop()
    assert (first.status, first.mode, second.mode) == ("redeemed", "offline", "offline")
    assert 0.25 <= first_s < 1.2  # the reservation timeout, not the cloud's 1.5 s
    assert second_s < 0.25  # the link is OFFLINE: no second wait
    assert proxy.injected["slow"] == 1
