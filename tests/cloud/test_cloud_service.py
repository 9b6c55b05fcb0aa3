"""start_cloud: a real server on 127.0.0.1, port 0 resolved, codes issued in-process."""

from pathlib import Path

import aiohttp

from cloud.config import CloudConfig
from cloud.service import create_enroll_code, start_cloud


async def test_start_cloud_binds_a_real_port_and_stops_cleanly(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    cloud = await start_cloud(CloudConfig(db_url=db_url, port=0))
    try:
        assert cloud.port > 0
        assert cloud.url == f"http://127.0.0.1:{cloud.port}"
        issued = await cloud.create_enroll_code("store-42")
        async with aiohttp.ClientSession() as session:
            async with session.get(cloud.url + "/healthz") as response:
                assert response.status == 200
            async with session.post(cloud.url + "/v1/enroll", json={"code": issued.code}) as r:
                assert (await r.json())["store_id"] == "store-42"
            admin = {"Authorization": f"Bearer {cloud.admin_token}"}
            async with session.get(cloud.url + "/api/stores", headers=admin) as response:
                assert [s["store_id"] for s in (await response.json())["stores"]] == ["store-42"]
    finally:
        await cloud.stop()
    await cloud.stop()  # idempotent


async def test_code_from_a_closed_database_works_on_the_running_cloud(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    async with await start_cloud(CloudConfig(db_url=db_url, port=0)) as cloud:
        # Another process (the CLI) writes the code into the same file while the cloud runs.
        issued = await create_enroll_code(db_url, "store-1")
        assert issued.store_created
        async with (
            aiohttp.ClientSession() as session,
            session.post(cloud.url + "/v1/enroll", json={"code": issued.code}) as response,
        ):
            assert response.status == 200
