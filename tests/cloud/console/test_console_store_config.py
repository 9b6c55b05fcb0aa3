"""The store page's applied vs desired business config, and the "config refused" alert, driven
by real heartbeats and admin-API config writes over loopback HTTP."""

import html
import re
from datetime import UTC, datetime
from typing import Any

from console.console_helpers import Client, FakeAgent, add_user, enroll_agent, login, tick

ADMIN = {"Authorization": "Bearer t"}


async def desired(agent: FakeAgent) -> tuple[int, str]:
    """(settings version, hash) of the config the cloud serves this agent now."""
    response = await agent.client.get("/v1/config", headers=agent.auth)
    assert response.status == 200
    body = await response.json()
    return body["settings_version"], body["version"]


async def put_store_config(client: Client, store_id: str, document: dict[str, Any]) -> int:
    body = {"document": document, "author": "ops", "comment": "test"}
    response = await client.put(f"/api/stores/{store_id}/config", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    version: int = (await response.json())["version"]["version"]
    return version


def config_row(page: str, agent: FakeAgent) -> str:
    row = re.search(rf'<tr data-agent="{agent.agent_id}" data-config-state="(\w+)">.*?</tr>',
                    page, re.S)  # fmt: skip
    assert row, page
    return row.group(0)


def text_of(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def state_of(page: str, agent: FakeAgent) -> str:
    found = re.search(r'data-config-state="(\w+)"', config_row(page, agent))
    assert found
    return found.group(1)


async def test_applied_vs_desired_refused_alerted_then_healed(client: Client) -> None:
    await add_user(client, "viewer", "viewer")
    await login(client, "viewer")
    agent = await enroll_agent(client, "store-a")
    await agent.heartbeat()  # an agent from before remote config reports nothing
    page = await (await client.get("/console/stores/store-a")).text()
    assert state_of(page, agent) == "not_reported"
    assert 'data-desired-version="0"' in page
    assert "defaults: no fleet document or store override written yet" in page

    version, good = await desired(agent)
    await agent.heartbeat(config_version=version, config_hash=good)
    page = await (await client.get("/console/stores/store-a")).text()
    assert state_of(page, agent) == "in_sync"
    assert good[:12] in config_row(page, agent)

    # Head office names a device this store's box does not have: the agent refuses it.
    bad_version = await put_store_config(client, "store-a", {"devices": {"scanner-9": {}}})
    page = await (await client.get("/console/stores/store-a")).text()
    assert f'data-desired-version="{bad_version}"' in page
    assert "v" + str(bad_version) + " by ops" in page
    assert state_of(page, agent) == "pending"  # not fetched yet
    _, bad = await desired(agent)
    reason = "devices.scanner-9: no such device on this box (agent.toml declares: <none>)"
    refusal = {"settings_version": bad_version, "config_hash": bad, "reason": reason,
               "at": datetime.now(UTC).isoformat()}  # fmt: skip
    await agent.heartbeat(config_version=version, config_hash=good, config_error=refusal)
    page = await (await client.get("/console/stores/store-a")).text()
    row = text_of(config_row(page, agent))
    assert state_of(page, agent) == "refused"
    assert f"settings v{bad_version}: {reason}" in row
    assert "&lt;none&gt;" in config_row(page, agent)  # the agent's words are escaped
    assert "storeedge cloud config set --store store-a FILE" in page
    assert "The agent keeps running on its last good config" in page
    fragment = await (await client.get("/console/stores/store-a?fragment=config")).text()
    assert fragment.lstrip().startswith('<dl class="facts">')
    assert 'data-config-state="refused"' in fragment

    await tick(client)
    alerts = await (await client.get("/console/stores/store-a?fragment=alerts")).text()
    assert "Config refused" in alerts
    assert f"The agent refused settings v{bad_version}: {reason}" in text_of(alerts)
    listed = await (await client.get("/console/alerts?rule=config_refused")).text()
    assert "1 alert." in listed
    assert "store-a" in listed

    # Fixed: a new version without the device; the agent applies it and stops refusing.
    fixed_version = await put_store_config(client, "store-a", {"devices": None})
    fixed_settings, fixed = await desired(agent)
    assert fixed_settings == fixed_version
    await agent.heartbeat(config_version=fixed_version, config_hash=fixed)
    page = await (await client.get("/console/stores/store-a")).text()
    row = text_of(config_row(page, agent))
    assert state_of(page, agent) == "in_sync"
    assert f"last refusal, since healed: settings v{bad_version}" in row
    assert "The agent keeps running on its last good config" not in page
    await tick(client)
    assert (
        "Config refused"
        not in await (await client.get("/console/stores/store-a?fragment=alerts")).text()
    )
    resolved = await (await client.get("/console/alerts?state=resolved&rule=config_refused")).text()
    assert "store-a" in resolved


async def test_a_store_of_two_agents_judges_each_and_ignores_revoked_ones(client: Client) -> None:
    await add_user(client, "viewer", "viewer")
    await login(client, "viewer")
    first = await enroll_agent(client, "store-b")
    second = await enroll_agent(client, "store-b")
    version, good = await desired(first)
    await first.heartbeat(config_version=version, config_hash=good)
    await second.heartbeat(config_version=version, config_hash="0" * 32)
    page = await (await client.get("/console/stores/store-b")).text()
    assert (state_of(page, first), state_of(page, second)) == ("in_sync", "pending")
    revoked = await client.post(f"/api/agents/{second.agent_id}/revoke", headers=ADMIN)
    assert revoked.status == 200
    page = await (await client.get("/console/stores/store-b")).text()
    assert f'data-agent="{second.agent_id}"' not in page
    assert state_of(page, first) == "in_sync"
