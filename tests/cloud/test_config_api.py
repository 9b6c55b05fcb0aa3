"""Remote config over loopback HTTP: fleet and store documents as immutable versions, merge
rules, checks at write time, what agents are served, and the console's desired vs applied."""

from datetime import UTC, datetime
from typing import Any

import pytest
from cloud_helpers import ADMIN, STORE, Agent, Client, admin_get

from cloud.settings import merge_patch
from protocol.coupon_events import BusinessConfig

RECEIPT = {"store_name": "Storeedge Chain", "voucher_footer": ["Not exchangeable for cash"]}


async def put(client: Client, path: str, document: Any, **extra: Any) -> tuple[int, Any]:
    body = {"document": document, "author": "alice@hq", "comment": "test", **extra}
    response = await client.put(path, json=body, headers=ADMIN)
    return response.status, await response.json()


async def fetch(client: Client, agent: Agent, etag: str | None = None) -> Any:
    headers = {**agent.auth, **({"If-None-Match": etag} if etag else {})}
    return await client.get("/v1/config", headers=headers)


async def heartbeat(client: Client, agent: Agent, **config: Any) -> None:
    body = {
        "sent_at": datetime.now(UTC).isoformat(),
        "version": "test",
        "backlog_events": 0,
        "backlog_bytes": 0,
        "devices": [
            {"device_id": "scanner-front", "kind": "scanner", "state": "online"},
            {"device_id": "till", "kind": "printer", "state": "online"},
        ],
        **config,
    }
    response = await client.post("/v1/heartbeat", json=body, headers=agent.auth)
    assert response.status == 200, await response.text()


# RFC 7396 Appendix A, every example: (target, patch, result).
RFC7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7396_EXAMPLES)
def test_merge_patch_follows_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before  # the stored documents are never modified


async def test_every_fleet_write_is_a_new_immutable_version(client: Client) -> None:
    assert await admin_get(client, "/api/config/fleet") == {"fleet": None}
    status, first = await put(client, "/api/config/fleet", {"receipt": RECEIPT})
    assert status == 201, first
    status, second = await put(
        client, "/api/config/fleet", {"coupons": {"reserve_timeout_ms": 800}}, comment="slow"
    )
    assert status == 201
    v1, v2 = first["version"]["version"], second["version"]["version"]
    assert v2 > v1
    fleet = (await admin_get(client, "/api/config/fleet"))["fleet"]
    assert fleet["version"] == v2
    assert fleet["document"] == {"coupons": {"reserve_timeout_ms": 800}}
    assert (fleet["author"], fleet["comment"], fleet["scope"]) == ("alice@hq", "slow", "fleet")
    # The first version is still there, as written: history, not overwrites.
    old = await admin_get(client, f"/api/config/versions/{v1}")
    assert old["document"] == {"receipt": RECEIPT}
    history = await admin_get(client, "/api/config/versions")
    assert [v["version"] for v in history["versions"]] == [v2, v1]
    page = await admin_get(client, "/api/config/versions?limit=1")
    assert [v["version"] for v in page["versions"]] == [v2]
    assert page["next_before"] == v2
    rest = await admin_get(client, f"/api/config/versions?limit=1&before={v2}")
    assert [v["version"] for v in rest["versions"]] == [v1]
    assert rest["next_before"] is None
    missing = await client.get("/api/config/versions/999", headers=ADMIN)
    assert missing.status == 404


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2], "document: Input should be a valid dictionary"),
        ({"receipt": {"colour": "red"}}, "receipt.colour: Extra inputs are not permitted"),
        ({"scan": {"staff_badge_patterns": ["STAFF-("]}}, "is not a valid regex"),
        # Fine alone, but not as one alternative of several (global flags must lead).
        ({"scan": {"staff_badge_patterns": ["(?i)staff"]}}, "global flags not at the start"),
        ({"scan": {"coupon_prefixes": ["has space"]}}, "scan.coupon_prefixes.0"),
        ({"coupons": {"reserve_timeout_ms": 0}}, "coupons.reserve_timeout_ms"),
        ({"devices": {"bad id!": {}}}, "devices.bad id!.[key]"),
        ({"receipt": {"voucher_footer": ["x" * 65]}}, "receipt.voucher_footer.0"),
    ],
)
async def test_a_bad_document_is_refused_with_its_reason_and_not_stored(
    client: Client, document: Any, reason: str
) -> None:
    status, body = await put(client, "/api/config/fleet", document)
    assert status == 400
    assert reason in body["error"]
    assert (await admin_get(client, "/api/config/versions"))["versions"] == []


async def test_writes_need_an_author_and_fit_the_size_limit(client: Client) -> None:
    response = await client.put("/api/config/fleet", json={"document": {}}, headers=ADMIN)
    assert response.status == 400
    assert "author" in (await response.json())["error"]
    huge = {"receipt": {"voucher_footer": ["x" * 64] * 8}, "pad": "x" * 70_000}
    status, body = await put(client, "/api/config/fleet", huge)
    assert status == 400
    assert "at most 65536" in body["error"]
    anonymous = await client.put("/api/config/fleet", json={"document": {}, "author": "a"})
    assert anonymous.status == 401


async def test_if_version_refuses_a_write_that_raced_another(client: Client) -> None:
    status, _ = await put(client, "/api/config/fleet", {}, if_version=0)
    assert status == 201
    status, body = await put(client, "/api/config/fleet", {"receipt": RECEIPT}, if_version=0)
    assert status == 409
    assert "is at version 1, not 0" in body["error"]
    assert len((await admin_get(client, "/api/config/versions"))["versions"]) == 1
    status, _ = await put(client, "/api/config/fleet", {"receipt": RECEIPT}, if_version=1)
    assert status == 201


async def test_store_override_merges_over_the_fleet_and_reaches_the_agent(
    client: Client, agent: Agent
) -> None:
    first = await fetch(client, agent)
    default = BusinessConfig.model_validate(await first.json())
    assert default.settings_version == 0
    assert default.coupons.reserve_timeout_ms == 300
    etag = first.headers["ETag"]

    status, fleet = await put(client, "/api/config/fleet", {
        "receipt": RECEIPT, "scan": {"coupon_prefixes": ["SE2."]},
        "coupons": {"reserve_timeout_ms": 900},
    })  # fmt: skip
    assert status == 201
    override = {
        "receipt": {"store_name": "Flagship Shanghai", "voucher_footer": None},
        "devices": {"scanner-front": {"scan": {"staff_badge_patterns": ["^GUARD-[0-9]{3}$"]}}},
    }
    status, store = await put(client, f"/api/stores/{STORE}/config", override)
    assert status == 201, store
    assert store["version"]["scope"] == "store"

    changed = await fetch(client, agent, etag)
    assert changed.status == 200
    config = BusinessConfig.model_validate(await changed.json())
    assert changed.headers["ETag"] == f'"{config.version}"' != etag
    assert config.settings_version == store["version"]["version"]
    assert config.receipt.store_name == "Flagship Shanghai"
    assert config.receipt.voucher_footer == []  # null in the override removed the fleet's
    assert config.scan.coupon_prefixes == ["SE2."]  # from the fleet, untouched
    assert config.devices["scanner-front"].scan.staff_badge_patterns == ["^GUARD-[0-9]{3}$"]
    assert config.coupons.reserve_timeout_ms == 900
    unchanged = await fetch(client, agent, changed.headers["ETag"])
    assert unchanged.status == 304

    view = await admin_get(client, f"/api/stores/{STORE}/config")
    assert view["settings_version"] == config.settings_version
    assert view["config_hash"] == config.version
    assert view["fleet"]["version"] == fleet["version"]["version"]
    assert view["effective"]["receipt"]["store_name"] == "Flagship Shanghai"

    # A later fleet write gives the store a higher settings version again.
    status, newer = await put(client, "/api/config/fleet", {"receipt": RECEIPT})
    assert status == 201
    again = BusinessConfig.model_validate(await (await fetch(client, agent)).json())
    assert again.settings_version == newer["version"]["version"] > config.settings_version
    assert again.scan.coupon_prefixes == []  # the fleet's new document has none
    assert again.receipt.store_name == "Flagship Shanghai"
    mine = await admin_get(client, f"/api/config/versions?store_id={STORE}&fleet=0")
    assert [v["scope"] for v in mine["versions"]] == ["store"]
    shaped = await admin_get(client, f"/api/config/versions?store_id={STORE}")
    assert [v["scope"] for v in shaped["versions"]] == ["fleet", "store", "fleet"]


async def test_store_config_needs_a_known_store(client: Client) -> None:
    status, body = await put(client, "/api/stores/nowhere/config", {})
    assert status == 404
    assert "unknown store" in body["error"]
    assert (await client.get("/api/stores/nowhere/config", headers=ADMIN)).status == 404


async def test_a_fleet_write_that_would_break_a_store_override_is_refused(
    client: Client, agent: Agent
) -> None:
    # 200 device entries in the store's override; a fleet adding 100 others would make 300,
    # past the 256 a merged document may hold.
    devices: dict[str, Any] = {f"d{i}": {} for i in range(200)}
    status, _ = await put(client, f"/api/stores/{STORE}/config", {"devices": devices})
    assert status == 201
    others: dict[str, Any] = {f"f{i}": {} for i in range(100)}
    status, body = await put(client, "/api/config/fleet", {"devices": others})
    assert status == 400
    assert f"store {STORE}: document: devices" in body["error"]
    assert (await admin_get(client, "/api/config/fleet"))["fleet"] is None
    del agent


async def test_console_shows_desired_applied_and_the_last_refusal(
    client: Client, agent: Agent
) -> None:
    await heartbeat(client, agent)  # an agent from before remote config says nothing
    store = await admin_get(client, f"/api/stores/{STORE}")
    assert store["config"]["agents"] == []
    desired = store["config"]["config_hash"]
    await heartbeat(client, agent, config_version=0, config_hash=desired)
    report = (await admin_get(client, f"/api/stores/{STORE}"))["config"]["agents"][0]
    assert report["agent_id"] == agent.agent_id
    assert (report["applied_version"], report["in_sync"], report["refusing"]) == (0, True, False)

    status, bad = await put(client, f"/api/stores/{STORE}/config",
                            {"devices": {"scanner-9": {}}})  # fmt: skip
    assert status == 201
    assert bad["warnings"] == [
        "devices.scanner-9: no agent of store store-1 reported such a device; "
        "its agent will refuse this config"
    ]
    view = (await admin_get(client, f"/api/stores/{STORE}"))["config"]
    refused_hash = view["config_hash"]
    assert view["agents"][0]["in_sync"] is False
    refusal = {
        "settings_version": bad["version"]["version"],
        "config_hash": refused_hash,
        "reason": "devices.scanner-9: no such device on this box",
        "at": datetime.now(UTC).isoformat(),
    }
    await heartbeat(client, agent, config_version=0, config_hash=desired, config_error=refusal)
    view = (await admin_get(client, f"/api/stores/{STORE}"))["config"]
    report = view["agents"][0]
    assert (report["applied_hash"], report["refusing"]) == (desired, True)
    assert report["last_refusal"]["reason"] == refusal["reason"]
    assert report["last_refusal"]["settings_version"] == bad["version"]["version"]

    status, good = await put(client, f"/api/stores/{STORE}/config",
                             {"devices": {"till": {}}})  # fmt: skip
    assert (status, good["warnings"]) == (201, [])
    fixed = (await admin_get(client, f"/api/stores/{STORE}"))["config"]
    await heartbeat(client, agent, config_version=good["version"]["version"],
                    config_hash=fixed["config_hash"])  # fmt: skip
    report = (await admin_get(client, f"/api/stores/{STORE}"))["config"]["agents"][0]
    assert (report["in_sync"], report["refusing"]) == (True, False)
    # Healed, but the console still shows what was refused last, and why.
    assert report["last_refusal"]["config_hash"] == refused_hash


async def test_a_printer_given_scan_rules_is_warned_about(client: Client, agent: Agent) -> None:
    await heartbeat(client, agent)
    rules = {"scan": {"coupon_prefixes": ["X."]}}
    status, body = await put(client, f"/api/stores/{STORE}/config", {"devices": {"till": rules}})
    assert status == 201
    assert body["warnings"] == [
        "devices.till: scan rules need a scanner, it is a printer;"
        " its agent will refuse this config"
    ]
