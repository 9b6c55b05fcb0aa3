"""The Coupons page on the cloud's real coupon storage: campaigns and their stats, conflicts
from offline double redemption synced through the ingest API, redemptions per store over
time, and issuing with QR codes (admins only, CSRF, audited, bad forms refused)."""

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud.console.coupon_adapter import StorageCoupons
from cloud.keys import COUNTERS, COUPON_STORAGE
from console.console_helpers import Client, FakeAgent, add_user, enroll_agent, login, tick
from protocol.coupon_events import BusinessConfig
from protocol.coupons import keyring, parse_token, verify_token
from protocol.ids import uuid7_str

ADMIN = {"Authorization": "Bearer t"}  # the console tests' CloudConfig admin token
NOW = datetime.now(UTC)


async def campaign(client: Client, name: str = "Spring <sale>", **extra: Any) -> int:
    body = {
        "name": name, "currency": "CNY", "max_offline_value": 5000,
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_to": (NOW + timedelta(days=10)).isoformat(), **extra,
    }  # fmt: skip
    response = await client.post("/api/campaigns", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    campaign_id: int = (await response.json())["campaign_id"]
    return campaign_id


async def tokens(client: Client, campaign_id: int, count: int, value: int = 2000) -> list[str]:
    response = await client.post(f"/api/campaigns/{campaign_id}/coupons",
                                 json={"count": count, "value": value}, headers=ADMIN)  # fmt: skip
    assert response.status == 201, await response.text()
    return [c["token"] for c in (await response.json())["coupons"]]


def redeemed(token: str, mode: str = "offline") -> tuple[str, str, dict[str, Any]]:
    """A `coupon.redeemed` event as an agent's coupon flow records it."""
    claims = parse_token(token).claims
    payload = {
        "redemption_id": uuid7_str(), "campaign_id": claims.campaign_id,
        "coupon_id": claims.coupon_id, "key_id": claims.key_id,
        "value_minor": claims.value_minor, "currency": claims.currency,
        "single_use": claims.single_use, "reservation": mode,
    }  # fmt: skip
    return ("scanner-till", "coupon.redeemed", payload)


def rejected(token: str, reason: str) -> tuple[str, str, dict[str, Any]]:
    claims = parse_token(token).claims
    payload = {"reason": reason, "campaign_id": claims.campaign_id, "coupon_id": claims.coupon_id}
    return ("scanner-till", "coupon.rejected", payload)


async def admin(client: Client) -> str:
    await add_user(client, "admin", "admin")
    return await login(client, "admin")


async def test_no_campaigns_yet_says_how_to_create_one(client: Client) -> None:
    await admin(client)
    page = await (await client.get("/console/coupons")).text()
    assert "No campaigns yet" in page
    assert "/api/campaigns" in page
    assert "Issue coupons" not in page  # nothing to issue from
    assert "No conflicts" in page
    assert "No store has synced a coupon redemption in the last 24 hours" in page


async def test_campaigns_conflicts_and_redemptions_from_real_ingest(client: Client) -> None:
    await admin(client)
    cid = await campaign(client)
    first, second, third = await tokens(client, cid, 3)
    north = await enroll_agent(client, "store-north")
    south = await enroll_agent(client, "store-south")
    # Both stores were offline and redeemed `first`; north also redeemed `second`; south
    # refused `third` as over its offline limit.
    await north.send(redeemed(first), redeemed(second))
    await south.send(redeemed(first), rejected(third, "over_offline_limit"))
    await tick(client)
    page = await (await client.get("/console/coupons")).text()

    row = re.search(rf'<tr data-campaign="{cid}">.*?</tr>', page, re.S)
    assert row, page
    text = html.unescape(re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "Spring <sale>" in text  # escaped in the HTML, shown as typed
    assert "<sale>" not in row.group(0)
    assert re.search(r'data-label="Issued" class="num">3<', row.group(0))
    assert re.search(r'data-stat="redeemed">2<', row.group(0))  # two distinct coupons
    assert "60.00 CNY" in text  # three redemption records of 20.00, the conflicting pair too
    assert "over offline limit 1" in " ".join(text.split())
    assert re.search(r'data-stat="conflicts"><a class="bad" href="#conflicts-h">1<', row.group(0))
    assert "running" in text

    conflict = re.search(r'<tr data-conflict="(\d+)">.*?</tr>', page, re.S)
    assert conflict, page
    assert int(conflict.group(1)) == parse_token(first).claims.coupon_id
    assert 'href="/console/stores/store-north">store-north<' in conflict.group(0)
    assert 'href="/console/stores/store-south">store-south<' in conflict.group(0)
    assert "1 in all" in page

    # Redemptions per store: north 2, south 1, stacked in the chart and listed.
    assert re.search(r'<tr data-store="store-north">.*?class="num">2<', page, re.S)
    assert re.search(r'<tr data-store="store-south">.*?class="num">1<', page, re.S)
    assert ('aria-label="Redemptions per store over the last 24 hours, busiest 2 stores:'
            ' 3 in all"') in page  # fmt: skip
    assert page.count('<rect class="s0"') == 1
    assert page.count('<rect class="s1"') == 1
    store = await (await client.get("/console/stores/store-north")).text()
    assert f"coupon_id {parse_token(second).claims.coupon_id}" in store  # its redemptions
    week = await client.get("/console/coupons?range=7d")
    assert week.status == 200
    assert "over the last 7 days" in await week.text()
    bad = await client.get("/console/coupons?range=forever")
    assert bad.status == 400
    assert client.app[COUNTERS].bad_requests["console_bad_range"] == 1


async def test_replayed_batches_and_a_third_store_make_still_one_conflict(client: Client) -> None:
    await admin(client)
    (token,) = await tokens(client, await campaign(client), 1)
    stores = [await enroll_agent(client, f"store-{n}") for n in ("a", "b", "c")]
    event = redeemed(token)
    await stores[0].send(event)
    await stores[1].send(redeemed(token))
    await stores[2].send(redeemed(token, "reserved"))
    await tick(client)
    page = await (await client.get("/console/coupons")).text()
    rows = re.findall(r'<tr data-conflict="\d+">.*?</tr>', page, re.S)
    assert len(rows) == 1
    assert all(f"store-{n}</a>" in rows[0] for n in ("a", "b", "c"))


async def test_an_admin_issues_coupons_whose_qr_tokens_verify_in_a_store(client: Client) -> None:
    csrf = await admin(client)
    cid = await campaign(client, "Autumn", currency="EUR")
    form = {"_csrf": csrf, "campaign_id": str(cid), "count": "3", "value": "19.90",
            "stores": "store-a, store-b", "single_use": "1"}  # fmt: skip
    response = await client.post("/console/coupons/issue", data=form)
    assert response.status == 200
    page = await response.text()
    assert len(re.findall(r'<li data-coupon="\d+"><figure><svg ', page)) == 3
    issued = re.findall(r'<code class="token">([^<]+)</code>', page)
    assert len(issued) == 3
    assert "19.90 EUR" in page
    # Each QR's token is a genuine coupon of the campaign, scoped as asked.
    agent = await enroll_agent(client, "store-a")
    config = await client.get("/v1/config", headers=agent.auth)
    keys = keyring(BusinessConfig.model_validate(await config.json()).coupons)
    for token in issued:
        coupon = verify_token(token, keys, datetime.now(UTC), "store-a")
        assert (coupon.claims.campaign_id, coupon.claims.value_minor) == (cid, 1990)
        assert coupon.claims.single_use
        assert coupon.claims.allows_store("store-b")
        assert not coupon.claims.allows_store("c")
        stored = await client.get(f"/api/coupons/{coupon.claims.coupon_id}", headers=ADMIN)
        assert (await stored.json())["token"] == token
    audit = await (await client.get("/console/audit")).text()
    assert "coupons_issue" in audit
    assert f"campaign {cid}" in audit
    assert "3 coupons of 19.90 EUR, stores store-a, store-b" in audit
    listed = await (await client.get("/console/coupons")).text()
    assert re.search(rf'<tr data-campaign="{cid}">.*?data-label="Issued" class="num">3<',
                     listed, re.S)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message", "key"),
    [
        ({"count": "0"}, "count: expected a number 1..100", "console_bad_count"),
        ({"count": "5000"}, "count: expected a number 1..100", "console_bad_count"),
        ({"value": "twenty"}, "value: not an amount", "console_bad_value"),
        ({"value": "1.234"}, "value: CNY has 2 decimals, not 3", "console_bad_value"),
        ({"value": "99999999"}, "value: Input should be less than or equal to",
         "console_bad_issue"),
        ({"stores": "store a!"}, "stores.1: String should match pattern", "console_bad_issue"),
        ({"stores": " ".join(f"s{i}" for i in range(9))}, "stores: List should have at most 8",
         "console_bad_issue"),
    ],
)  # fmt: skip
async def test_a_bad_issue_form_is_refused_with_its_reason_kept_and_counted(
    client: Client, changes: dict[str, str], message: str, key: str
) -> None:
    csrf = await admin(client)
    cid = await campaign(client)
    form = {"_csrf": csrf, "campaign_id": str(cid), "count": "2", "value": "20",
            "stores": "", "single_use": "1", **changes}  # fmt: skip
    response = await client.post("/console/coupons/issue", data=form)
    assert response.status == 400
    page = html.unescape(await response.text())
    error = re.search(r'id="issue-error">([^<]+)<', page)
    assert error, page
    assert message in error.group(1)
    assert f'value="{changes.get("count", "2")}"' in page  # what was typed is kept
    assert client.app[COUNTERS].bad_requests[key] == 1
    stats = await client.app[COUPON_STORAGE].campaign_stats(cid)
    assert stats is not None
    assert stats.issued == 0  # nothing was issued


async def test_unknown_or_ended_campaigns_and_no_csrf_issue_nothing(client: Client) -> None:
    csrf = await admin(client)
    ended = await campaign(client, "Last year", valid_from=(NOW - timedelta(days=30)).isoformat(),
                           valid_to=(NOW - timedelta(days=20)).isoformat())  # fmt: skip
    page = await (await client.get("/console/coupons")).text()
    assert "ended" in page
    assert "Every campaign has ended" in page
    form = {"_csrf": csrf, "campaign_id": str(ended), "count": "1", "value": "5"}
    refused = await client.post("/console/coupons/issue", data=form)
    assert refused.status == 400
    assert "campaign: Last year has ended" in await refused.text()
    unknown = await client.post("/console/coupons/issue", data={**form, "campaign_id": "999"})
    assert unknown.status == 404
    forged = await client.post("/console/coupons/issue", data={**form, "_csrf": "x"})
    assert forged.status == 403
    stats = await client.app[COUPON_STORAGE].campaign_stats(ended)
    assert stats is not None
    assert stats.issued == 0


async def test_only_admins_issue_coupons(client: Client) -> None:
    await campaign(client)
    await add_user(client, "eng", "engineer")
    csrf = await login(client, "eng")
    page = await (await client.get("/console/coupons")).text()
    assert "Spring &lt;sale&gt;" in page  # engineers see campaigns and stats…
    assert "Issue coupons" not in page  # …but get no form
    refused = await client.post(
        "/console/coupons/issue", data={"_csrf": csrf, "campaign_id": "1", "count": "1"}
    )
    assert refused.status == 403
    assert client.app[COUNTERS].bad_requests["console_forbidden"] == 1


async def test_the_page_lists_the_newest_campaigns_first_within_its_bound(client: Client) -> None:
    for name in ("one", "two", "three"):
        await campaign(client, name)
    source = StorageCoupons(client.app[COUPON_STORAGE], max_campaigns=2)
    assert [c.name for c in await source.list_campaigns()] == ["three", "two"]


async def send_conflicts(agent_a: FakeAgent, agent_b: FakeAgent, batch: list[str]) -> None:
    await agent_a.send(*(redeemed(t) for t in batch))
    await agent_b.send(*(redeemed(t) for t in batch))


async def test_conflicts_are_listed_newest_first_and_bounded(client: Client) -> None:
    await admin(client)
    cid = await campaign(client)
    batch = await tokens(client, cid, 3)
    a, b = await enroll_agent(client, "store-a"), await enroll_agent(client, "store-b")
    for token in batch:  # one conflict per batch, in this order
        await send_conflicts(a, b, [token])
    listed = await StorageCoupons(client.app[COUPON_STORAGE]).recent_conflicts(2)
    ids = [parse_token(t).claims.coupon_id for t in batch]
    assert [c.coupon_id for c in listed] == [ids[2], ids[1]]
    assert all(c.stores == ["store-a", "store-b"] for c in listed)
