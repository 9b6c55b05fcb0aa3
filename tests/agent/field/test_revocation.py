"""A revoked token: the agent keeps buffering, asks rarely, says so; re-enroll and rotate heal it.

The real cloud on loopback, the real agent runtime with its status page, a scanner on a pty
and the real CLI commands (enroll, rotate-token, status) run as the field engineer would.
"""

import asyncio
import socket
from pathlib import Path

import aiohttp
from field_helpers import until

from agent.cli.main import main
from agent.config import load_config
from agent.credentials import enroll, load_credentials, save_credentials
from agent.runtime import AgentRuntime
from cloud.config import CloudConfig
from cloud.keys import AGENT_AUTH
from cloud.service import start_cloud
from hardware.emulators.scanner import PtyScanner

ADMIN = "revocation-admin"
STORE = "store-rv"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_revoked_token_buffers_quietly_then_reenrollment_and_rotation_heal(
    tmp_path: Path, capsys: object
) -> None:
    cloud = await start_cloud(
        CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    )
    state = tmp_path / "state"
    save_credentials(state, await enroll(cloud.url, (await cloud.create_enroll_code(STORE)).code))
    scanner = PtyScanner(tmp_path / "scanner")
    page_port = _free_port()
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        f'[agent]\nstate_dir = "{state}"\n\n'
        f'[cloud]\nurl = "{cloud.url}"\nheartbeat_interval_s = 0.2\nbackoff_cap_s = 0.2\n\n'
        f"[status_page]\nport = {page_port}\n\n"
        f'[[devices]]\nid = "scanner-1"\nkind = "scanner"\ntransport = "serial"\n'
        f'port = "{scanner.link}"\n'
    )
    config = load_config(config_path)
    runtime = AgentRuntime(config, load_credentials(state))
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run(stop))
    admin = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"})

    async def scans_in_cloud() -> int:
        async with admin.get(f"{cloud.url}/api/events/count?store_id={STORE}&kind=scan") as r:
            return int((await r.json())["count"])

    async def page_status() -> dict[str, object]:
        async with admin.get(f"http://127.0.0.1:{page_port}/api/status") as r:
            assert r.status == 200
            body: dict[str, object] = await r.json()
            return body

    async def scan(text: str) -> None:
        await asyncio.to_thread(scanner.scan, text)

    try:
        await runtime.started.wait()
        await until(lambda: runtime.drivers[0].health().state == "online", 10)
        await scan("4006381333931")
        await until(lambda: _eq(scans_in_cloud, 1), 10)
        agent_id = runtime.credentials.agent_id

        async with admin.post(f"{cloud.url}/api/agents/{agent_id}/revoke") as r:
            assert (await r.json())["revoked"] is True
        for code in ("A-1", "A-2", "A-3"):
            await scan(code)
        await until(lambda: _auth_refused(page_status), 10)

        # Buffering, and asking rarely: count the refusals the cloud saw over 3 s.
        refused_before = cloud.counters.bad_requests["bad_agent_token"]
        await asyncio.sleep(3.0)
        refusals = cloud.counters.bad_requests["bad_agent_token"] - refused_before
        # With backoff_cap_s = 0.2 a retry loop would ask ~15-30 times; a revoked token is
        # asked about every cap × 5 = 1 s at most (heartbeats every 300 s).
        assert refusals <= 5, refusals
        doc = await page_status()
        assert doc["outbox"]["backlog_events"] >= 3  # type: ignore[index]
        assert await scans_in_cloud() == 1
        assert "TOKEN REFUSED" in await runtime.status_line()

        # `storeedge agent status` says so too.
        status_rc = await asyncio.to_thread(main, ["agent", "status", "--config", str(config_path)])
        assert status_rc == 0
        assert "TOKEN REFUSED" in capsys.readouterr().out  # type: ignore[attr-defined]

        # Re-enroll with a fresh code: same agent id, so the buffered scans are accepted.
        fresh = (await cloud.create_enroll_code(STORE)).code
        argv = [
            "agent",
            "enroll",
            "--cloud",
            cloud.url,
            "--code",
            fresh,
            "--config",
            str(config_path),
        ]
        assert await asyncio.to_thread(main, argv) == 0
        assert load_credentials(state).agent_id == agent_id
        await until(lambda: _eq(scans_in_cloud, 4), 15)  # no restart of the agent
        assert (await page_status())["cloud"]["auth"] == "ok"  # type: ignore[index]
        assert (await runtime.outbox.stats()).dead_letters == 0  # type: ignore[union-attr]

        # Rotation while running: the agent takes the new token, the old one dies on use.
        old_token = load_credentials(state).token
        rotate = ["agent", "rotate-token", "--config", str(config_path)]
        assert await asyncio.to_thread(main, rotate) == 0
        new_token = load_credentials(state).token
        assert new_token != old_token
        await until(lambda: runtime.credentials.token == new_token, 10)
        await scan("A-4")
        await until(lambda: _eq(scans_in_cloud, 5), 15)
        cloud.app[AGENT_AUTH].forget(agent_id)  # past the auth cache's TTL
        async with admin.get(
            f"{cloud.url}/v1/agent", headers={"Authorization": f"Bearer {old_token}"}
        ) as r:
            assert r.status == 401
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
        await admin.close()
        scanner.close()
        await cloud.stop()
    assert agent.exception() is None


async def _eq(count: object, want: int) -> bool:
    return await count() == want  # type: ignore[operator, no-any-return]


async def _auth_refused(page_status: object) -> bool:
    doc = await page_status()  # type: ignore[operator]
    return bool(doc["cloud"]["auth"] == "refused")
