"""The coupon API over loopback HTTP: campaigns, issuing, config + ETag, reservation, stats."""

import asyncio
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud_helpers import ADMIN, Agent, Client, admin_get, post_events
from PIL import Image

from protocol.coupon_events import BusinessConfig
from protocol.coupons import keyring, parse_token, verify_token
from protocol.ids import uuid7_str

NOW = datetime.now(UTC)


async def new_campaign(client: Client, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Double Eleven",
        "currency": "CNY",
        "max_offline_value": 5000,
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_to": (NOW + timedelta(days=30)).isoformat(),
        **overrides,
    }
    response = await client.post("/api/campaigns", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def issue(client: Client, campaign_id: int, **overrides: Any) -> list[dict[str, Any]]:
    body = {"count": 2, "value": 2000, **overrides}
    response = await client.post(f"/api/campaigns/{campaign_id}/coupons", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    coupons: list[dict[str, Any]] = (await response.json())["coupons"]
    return coupons


async def get_config(client: Client, agent: Agent, etag: str | None = None) -> Any:
    headers = {**agent.auth, **({"If-None-Match": etag} if etag else {})}
    return await client.get("/v1/config", headers=headers)


async def reserve(client: Client, agent: Agent, token: str, rid: str | None = None) -> Any:
    claims = parse_token(token).claims
    body = {
        "coupon_id": claims.coupon_id,
        "campaign_id": claims.campaign_id,
        "redemption_id": rid or uuid7_str(),
    }
    response = await client.post("/v1/coupons/reserve", json=body, headers=agent.auth)
    return response.status, await response.json()


def redeemed_event(agent: Agent, seq: int, token: str, mode: str, rid: str) -> dict[str, Any]:
    claims = parse_token(token).claims
    payload = {
        "redemption_id": rid,
        "campaign_id": claims.campaign_id,
        "coupon_id": claims.coupon_id,
        "key_id": claims.key_id,
        "value_minor": claims.value_minor,
        "currency": claims.currency,
        "single_use": claims.single_use,
        "reservation": mode,
    }
    return agent.event(seq, kind="coupon.redeemed", payload=payload)


async def test_issued_tokens_verify_with_the_config_a_store_receives(
    client: Client, agent: Agent
) -> None:
    campaign = await new_campaign(client)
    assert "private" not in str(campaign).lower()
    coupons = await issue(client, campaign["campaign_id"], count=3)
    response = await get_config(client, agent)
    assert response.status == 200
    config = BusinessConfig.model_validate(await response.json())
    assert response.headers["ETag"] == f'"{config.version}"'
    keys = keyring(config.coupons)
    for coupon in coupons:
        verified = verify_token(coupon["token"], keys, NOW, agent.store_id)
        assert verified.claims.coupon_id == coupon["coupon_id"]
        assert verified.claims.value_minor == 2000
        assert coupon["coupon_id"] < 2**53  # exact in a browser console
    policy = config.coupons.campaigns[0]
    assert (policy.max_offline_value, policy.redeemable_here) == (5000, True)


async def test_config_etag_answers_304_until_the_business_changes(
    client: Client, agent: Agent
) -> None:
    first = await get_config(client, agent)
    etag = first.headers["ETag"]
    assert (await get_config(client, agent, etag)).status == 304
    assert (await get_config(client, agent, f'W/{etag}, "other"')).status == 304
    await new_campaign(client)
    changed = await get_config(client, agent, etag)
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert (await get_config(client, agent, "*")).status == 304


async def test_config_needs_an_agent_token(client: Client) -> None:
    response = await client.get("/v1/config")
    assert response.status == 401


async def test_campaign_scope_is_per_store_and_coupon_scope_is_in_the_token(
    client: Client, enroll: Callable[..., Awaitable[Agent]]
) -> None:
    inside, outside = await enroll("store-in"), await enroll("store-out")
    campaign = await new_campaign(client, stores=["store-in", "store-other"])
    (coupon,) = await issue(client, campaign["campaign_id"], count=1, stores=["store-in"])
    config_out = BusinessConfig.model_validate(await (await get_config(client, outside)).json())
    assert config_out.coupons.campaigns[0].redeemable_here is False
    assert parse_token(coupon["token"]).claims.allows_store("store-in")
    assert not parse_token(coupon["token"]).claims.allows_store("store-other")
    refused = await client.post(
        f"/api/campaigns/{campaign['campaign_id']}/coupons",
        json={"count": 1, "value": 1, "stores": ["store-elsewhere"]},
        headers=ADMIN,
    )
    assert refused.status == 400
    assert "outside the campaign" in (await refused.json())["error"]
    del inside


async def test_key_rotation_keeps_old_coupons_verifiable(client: Client, agent: Agent) -> None:
    campaign = await new_campaign(client)
    (old,) = await issue(client, campaign["campaign_id"], count=1)
    response = await client.post(f"/api/campaigns/{campaign['campaign_id']}/keys", headers=ADMIN)
    assert response.status == 201
    new_key = await response.json()
    (new,) = await issue(client, campaign["campaign_id"], count=1)
    assert parse_token(new["token"]).claims.key_id == new_key["key_id"]
    assert parse_token(old["token"]).claims.key_id != new_key["key_id"]
    config = BusinessConfig.model_validate(await (await get_config(client, agent)).json())
    keys = keyring(config.coupons)
    actives = [k.active for k in config.coupons.campaigns[0].keys]
    assert actives == [False, True]
    for coupon in (old, new):
        verify_token(coupon["token"], keys, NOW, agent.store_id)


async def test_qr_png_is_a_real_image(client: Client) -> None:
    campaign = await new_campaign(client)
    (coupon,) = await issue(client, campaign["campaign_id"], count=1)
    response = await client.get(coupon["qr_png"], headers=ADMIN)
    assert response.status == 200
    assert response.content_type == "image/png"
    image = Image.open(io.BytesIO(await response.read()))
    assert image.format == "PNG"
    assert image.width == image.height >= 200
    assert (await client.get(coupon["qr_png"])).status == 401


async def test_reservation_is_single_use_across_stores(
    client: Client, enroll: Callable[..., Awaitable[Agent]]
) -> None:
    a, b = await enroll("store-a"), await enroll("store-b")
    campaign = await new_campaign(client)
    (coupon,) = await issue(client, campaign["campaign_id"], count=1)
    rid = uuid7_str()
    status, answer = await reserve(client, a, coupon["token"], rid)
    assert (status, answer["status"], answer["store_id"]) == (200, "reserved", "store-a")
    # Resending the same redemption is answered the same; another store is refused.
    assert (await reserve(client, a, coupon["token"], rid))[1]["status"] == "reserved"
    status, answer = await reserve(client, b, coupon["token"])
    assert (status, answer["status"], answer["store_id"]) == (409, "already_redeemed", "store-a")
    held = await admin_get(client, f"/api/coupons/{coupon['coupon_id']}")
    assert held["held_by"]["store_id"] == "store-a"
    assert (held["held_by"]["redemption_id"], held["held_by"]["via"]) == (rid, "reservation")


async def test_concurrent_reservations_from_many_stores_have_one_winner(
    client: Client, enroll: Callable[..., Awaitable[Agent]]
) -> None:
    agents = [await enroll(f"store-{i}") for i in range(12)]
    campaign = await new_campaign(client)
    (coupon,) = await issue(client, campaign["campaign_id"], count=1)
    results = await asyncio.gather(*(reserve(client, x, coupon["token"]) for x in agents))
    winners = [answer for status, answer in results if status == 200]
    losers = [answer for status, answer in results if status == 409]
    assert len(winners) == 1
    assert len(losers) == 11
    assert {answer["store_id"] for answer in losers} == {winners[0]["store_id"]}


async def test_reserve_unknown_and_multi_use_coupons(client: Client, agent: Agent) -> None:
    campaign = await new_campaign(client)
    (multi,) = await issue(client, campaign["campaign_id"], count=1, single_use=False)
    status, answer = await reserve(client, agent, multi["token"])
    assert (status, answer["status"]) == (200, "not_required")
    body = {"coupon_id": 12345, "campaign_id": campaign["campaign_id"], "redemption_id": "r-1"}
    response = await client.post("/v1/coupons/reserve", json=body, headers=agent.auth)
    assert response.status == 404
    bad = await client.post("/v1/coupons/reserve", json={"coupon_id": -1}, headers=agent.auth)
    assert bad.status == 400


async def test_offline_double_redemption_is_one_conflict_naming_both_stores(
    client: Client, enroll: Callable[..., Awaitable[Agent]]
) -> None:
    a, b = await enroll("store-a"), await enroll("store-b")
    campaign = await new_campaign(client)
    cid = campaign["campaign_id"]
    (coupon, other) = await issue(client, cid, count=2)
    ra, rb = uuid7_str(), uuid7_str()
    event_a = redeemed_event(a, 1, coupon["token"], "offline", ra)
    event_b = redeemed_event(b, 1, coupon["token"], "offline", rb)
    assert (await post_events(client, a, [event_a]))[0] == 200
    assert (await post_events(client, b, [event_b]))[0] == 200
    # A replayed batch (lost answer) and a later third redemption keep it one conflict.
    await post_events(client, b, [event_b])
    conflicts = (await admin_get(client, "/api/coupons/conflicts"))["conflicts"]
    assert len(conflicts) == 1
    assert conflicts[0]["coupon_id"] == coupon["coupon_id"]
    assert conflicts[0]["stores"] == ["store-a", "store-b"]
    assert {r["redemption_id"] for r in conflicts[0]["redemptions"]} == {ra, rb}
    # After the first synced redemption the coupon is held: online reservation is refused.
    status, answer = await reserve(client, b, coupon["token"])
    assert (status, answer["store_id"]) == (409, "store-a")
    # The other coupon: reserved online, then its redemption synced, is no conflict.
    rid = uuid7_str()
    assert (await reserve(client, a, other["token"], rid))[0] == 200
    await post_events(client, a, [redeemed_event(a, 2, other["token"], "reserved", rid)])
    assert len((await admin_get(client, "/api/coupons/conflicts"))["conflicts"]) == 1
    stats = await admin_get(client, f"/api/campaigns/{cid}/stats")
    assert stats["issued"] == 2
    assert stats["reserved_online"] == 1
    assert stats["redeemed_coupons"] == 2
    assert stats["redemptions"] == 3
    assert stats["offline_redemptions"] == 2
    assert stats["conflicts"] == 1
    assert stats["value_redeemed"] == 3 * 2000
    assert sum(s["redemptions"] for s in stats["stores"]) == stats["redemptions"]


async def test_rejections_are_counted_per_reason(client: Client, agent: Agent) -> None:
    campaign = await new_campaign(client)
    cid = campaign["campaign_id"]
    payloads = [
        {"reason": "expired", "campaign_id": cid, "coupon_id": 7},
        {"reason": "expired", "campaign_id": cid, "coupon_id": 8},
        {"reason": "over_offline_limit", "campaign_id": cid, "coupon_id": 9},
        {"reason": "bad_signature", "token_fingerprint": "0123456789abcdef"},
    ]
    events = [
        agent.event(seq, kind="coupon.rejected", payload=p)
        for seq, p in enumerate(payloads, start=1)
    ]
    assert (await post_events(client, agent, events))[0] == 200
    stats = await admin_get(client, f"/api/campaigns/{cid}/stats")
    assert stats["rejected"] == {"expired": 2, "over_offline_limit": 1}


async def test_bad_admin_input_is_refused_with_a_reason(client: Client) -> None:
    cases: list[tuple[str, Any]] = [
        ("/api/campaigns", {"name": "x", "currency": "cny", "valid_from": NOW.isoformat(),
                            "valid_to": NOW.isoformat()}),
        ("/api/campaigns", {"name": "x", "currency": "CNY", "valid_from": NOW.isoformat(),
                            "valid_to": (NOW - timedelta(days=1)).isoformat()}),
        ("/api/campaigns/1/coupons", {"count": 0, "value": 1}),
        ("/api/campaigns/1/coupons", {"count": 1, "value": 1,
                                      "stores": [f"s{i}" for i in range(9)]}),
    ]  # fmt: skip
    for path, body in cases:
        response = await client.post(path, json=body, headers=ADMIN)
        assert response.status == 400, (path, body, await response.text())
        assert (await response.json())["error"]
    missing = await client.post("/api/campaigns/999/coupons", json={"count": 1, "value": 1},
                                headers=ADMIN)  # fmt: skip
    assert missing.status == 404
    assert (await client.get("/api/campaigns/999/stats", headers=ADMIN)).status == 404


async def test_coupon_validity_is_rounded_inward_to_whole_seconds(client: Client) -> None:
    # Token times are whole seconds: a window inside one second cannot be signed (it was a
    # 500), and a fractional one is rounded inward, never past what was asked.
    start = datetime(2030, 1, 1, tzinfo=UTC)
    campaign = await new_campaign(client, valid_from=start.isoformat(),
                                  valid_to=(start + timedelta(days=1)).isoformat())  # fmt: skip
    path = f"/api/campaigns/{campaign['campaign_id']}/coupons"
    at = [(start + timedelta(seconds=s)).isoformat() for s in (0.1, 0.5, 0.9, 1.0, 1.2, 1.9)]
    for begin, end in zip(at[::2], at[1::2], strict=True):
        body = {"count": 1, "value": 1, "valid_from": begin, "valid_to": end}
        response = await client.post(path, json=body, headers=ADMIN)
        assert response.status == 400, await response.text()
        assert (await response.json())["error"] == "coupon validity must span a whole second"
    [coupon] = await issue(client, campaign["campaign_id"], count=1,
                           valid_from=(start + timedelta(seconds=0.5)).isoformat(),
                           valid_to=(start + timedelta(seconds=2.5)).isoformat())  # fmt: skip
    claims = parse_token(coupon["token"]).claims
    assert (claims.valid_from, claims.valid_to) == (start.timestamp() + 1, start.timestamp() + 2)
    assert (coupon["valid_from"], coupon["valid_to"]) == (
        "2030-01-01T00:00:01Z", "2030-01-01T00:00:02Z")  # fmt: skip


async def test_issue_times_utc_cannot_hold_are_400(client: Client) -> None:
    # Valid ISO 8601 but year 10000 or 0 in UTC: converting them first was a 500.
    campaign = await new_campaign(client)
    path = f"/api/campaigns/{campaign['campaign_id']}/coupons"
    for field, at in (("valid_to", "9999-12-31T23:00:00-14:00"),
                      ("valid_from", "0001-01-01T00:00:00+14:00")):  # fmt: skip
        response = await client.post(path, json={"count": 1, "value": 1, field: at}, headers=ADMIN)
        assert response.status == 400, await response.text()
        assert (await response.json())["error"] == "coupon validity must lie within the campaign's"
