"""Token rotation and re-enrollment over real loopback HTTP.

Rotation stages a new token: the old one keeps working until the new one is first used, so
an answer lost on the way cannot lock an agent out. Re-enrollment keeps the agent id (its
buffered events stay deliverable), un-revokes it, and never crosses stores.
"""

from cloud_helpers import ADMIN, STORE, Agent, Client, new_code, post_events

from cloud.keys import AGENT_AUTH


async def _revoke(client: Client, agent: Agent) -> None:
    response = await client.post(f"/api/agents/{agent.agent_id}/revoke", headers=ADMIN)
    assert response.status == 200


async def test_whoami_names_the_agent_and_gives_the_clock(client: Client, agent: Agent) -> None:
    response = await client.get("/v1/agent", headers=agent.auth)
    assert response.status == 200
    body = await response.json()
    assert (body["agent_id"], body["store_id"]) == (agent.agent_id, STORE)
    assert body["server_time"].endswith("Z")
    bad = await client.get("/v1/agent", headers={"Authorization": "Bearer forged"})
    assert bad.status == 401


async def test_rotation_keeps_the_old_token_until_the_new_one_is_used(
    client: Client, agent: Agent
) -> None:
    response = await client.post("/v1/token/rotate", headers=agent.auth)
    assert response.status == 200
    new = Agent(**{**(await response.json())})
    assert new.agent_id == agent.agent_id
    assert new.token != agent.token
    # The answer might have been lost: the old token still works, and may rotate again.
    assert (await client.get("/v1/agent", headers=agent.auth)).status == 200
    # First use of the new token promotes it and retires the old one.
    status, answer = await post_events(client, new, [new.event(1)])
    assert status == 200
    assert answer["results"][0]["status"] == "accepted"
    client.app[AGENT_AUTH].forget(agent.agent_id)  # past the auth cache's TTL
    assert (await client.get("/v1/agent", headers=agent.auth)).status == 401
    assert (await client.get("/v1/agent", headers=new.auth)).status == 200


async def test_a_second_rotation_replaces_an_unused_staged_token(
    client: Client, agent: Agent
) -> None:
    first = await (await client.post("/v1/token/rotate", headers=agent.auth)).json()
    second = await (await client.post("/v1/token/rotate", headers=agent.auth)).json()
    unused = {"Authorization": f"Bearer {first['token']}"}
    assert (await client.get("/v1/agent", headers=unused)).status == 401
    latest = {"Authorization": f"Bearer {second['token']}"}
    assert (await client.get("/v1/agent", headers=latest)).status == 200


async def test_a_revoked_agent_cannot_rotate(client: Client, agent: Agent) -> None:
    await _revoke(client, agent)
    assert (await client.post("/v1/token/rotate", headers=agent.auth)).status == 401


async def test_reenrollment_keeps_the_id_unrevokes_and_voids_the_old_token(
    client: Client, agent: Agent
) -> None:
    await _revoke(client, agent)
    code = await new_code(client, STORE)
    response = await client.post("/v1/enroll", json={"code": code, "agent_id": agent.agent_id})
    assert response.status == 200, await response.text()
    again = Agent(**(await response.json()))
    assert again.agent_id == agent.agent_id
    assert again.token != agent.token
    # Events stamped with the old id, buffered during the revocation, are accepted now.
    status, answer = await post_events(client, again, [agent.event(7)])
    assert status == 200
    assert answer["results"][0]["status"] == "accepted"
    assert (await client.get("/v1/agent", headers=agent.auth)).status == 401
    store = await (await client.get(f"/api/stores/{STORE}", headers=ADMIN)).json()
    (row,) = store["agents"]
    assert row["revoked_at"] is None
    assert store["store"]["agents"] == 1


async def test_reenrollment_never_moves_an_agent_to_another_store(
    client: Client, agent: Agent
) -> None:
    code = await new_code(client, "store-2")
    response = await client.post("/v1/enroll", json={"code": code, "agent_id": agent.agent_id})
    assert response.status == 403
    assert "belongs to store store-1" in (await response.json())["error"]
    # The refusal spent nothing: the same code still enrolls a new agent of store-2.
    fresh = await client.post("/v1/enroll", json={"code": code})
    assert fresh.status == 200
    assert (await fresh.json())["agent_id"] != agent.agent_id
