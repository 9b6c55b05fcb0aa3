"""MirrorEmulator and `storeedge hw mirror`: the mirror_api as a vendor's mirror would serve it."""

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import zeroconf._core
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from agent.devices.mirror.discovery import MirrorDiscovery
from hardware.emulators.mirror import MirrorEmulator
from protocol.mirror_api import (
    SERVICE_TYPE,
    STREAM_ADAPTER,
    Ack,
    ApiError,
    DisplayAck,
    DisplayRequest,
    Hello,
    MirrorAdvert,
    MirrorInfo,
    ShowMessage,
    Tryon,
)

ROOT = Path(__file__).resolve().parents[2]
EAN = "4006381333931"


@pytest.fixture(autouse=True)
def quick_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    # Probing and announcing in ms (upstream quick_timing); _core is pure Python in 0.154.
    for name in ("_CHECK_TIME", "_REGISTER_TIME", "_UNREGISTER_TIME"):
        monkeypatch.setattr(zeroconf._core, name, 10)
    monkeypatch.setattr(zeroconf._core, "_PROBE_RANDOM_DELAY_INTERVAL", (1, 2))


@pytest.fixture
def service_type() -> str:
    return f"_se{secrets.token_hex(4)}._tcp.local."


@pytest.fixture
async def listener() -> AsyncIterator[AsyncZeroconf]:
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    yield zc
    await zc.async_close()


@pytest.fixture
async def mirror(service_type: str) -> AsyncIterator[MirrorEmulator]:
    async with MirrorEmulator("MM-9", service_type=service_type, backlog=3) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def receive(ws: aiohttp.ClientWebSocketResponse) -> object:
    return STREAM_ADAPTER.validate_json(await ws.receive_str(timeout=2.0))


async def test_info_describes_the_mirror(
    mirror: MirrorEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(mirror.url + "/info") as response:
        info = MirrorInfo.model_validate_json(await response.read())
    assert info == MirrorInfo(id="MM-9", model=info.model, api_version=1, firmware=info.firmware)


async def test_events_say_hello_replay_after_the_cursor_then_go_live(
    mirror: MirrorEmulator, http: aiohttp.ClientSession
) -> None:
    sid = mirror.session_start().session_id
    for _ in range(3):
        mirror.tryon(sid, barcode=EAN)  # counters 2..4; the backlog of 3 drops counter 1
    query = {"after": "2", "epoch": mirror.epoch}
    async with http.ws_connect(mirror.url + "/events", params=query) as ws:
        hello = await receive(ws)
        assert hello == Hello(mirror_id="MM-9", epoch=mirror.epoch, oldest=2, latest=4)
        assert [getattr(await receive(ws), "counter", None) for _ in range(2)] == [3, 4]
        live = mirror.tryon(sid, epc="3034257BF7194E4000001A85")
        assert await receive(ws) == live
        await ws.send_str(Ack(counter=live.counter).model_dump_json())
        await ws.send_str("not an ack")  # ignored, like any junk from a client
        while mirror.acked != live.counter:
            await asyncio.sleep(0.005)


async def test_another_epochs_cursor_replays_the_whole_backlog(
    mirror: MirrorEmulator, http: aiohttp.ClientSession
) -> None:
    sid = mirror.session_start().session_id
    mirror.tryon(sid, barcode=EAN)
    async with http.ws_connect(
        mirror.url + "/events", params={"after": "99", "epoch": "old"}
    ) as ws:
        assert isinstance(await receive(ws), Hello)
        replayed = [await receive(ws) for _ in range(2)]
        assert [getattr(m, "counter", None) for m in replayed] == [1, 2]
    async with http.get(mirror.url + "/events", params={"after": "-1"}) as response:
        assert response.status == 400
        assert "after" in ApiError.model_validate_json(await response.read()).error


async def test_display_records_valid_requests_once_and_refuses_bad_ones(
    mirror: MirrorEmulator, http: aiohttp.ClientSession
) -> None:
    request = DisplayRequest(
        request_id="r1", content=ShowMessage(text="Size M is coming"), ttl_s=20
    )
    for _ in range(2):
        async with http.post(mirror.url + "/display", data=request.model_dump_json()) as response:
            assert response.status == 200
            assert DisplayAck.model_validate_json(await response.read()).request_id == "r1"
    bad = {"request_id": "r2", "content": {"type": "message", "text": "hi"}, "ttl_s": 99999}
    async with http.post(mirror.url + "/display", json=bad) as response:
        assert response.status == 400
        assert "ttl_s" in ApiError.model_validate_json(await response.read()).error
    assert mirror.displayed == [request]
    assert mirror.display_rejections == 1


async def test_stop_and_start_moves_to_another_port_and_reannounces_it(
    listener: AsyncZeroconf, service_type: str, http: aiohttp.ClientSession
) -> None:
    name = f"MM-9.{service_type}"
    async with MirrorEmulator("MM-9", service_type=service_type) as mirror:
        sid = mirror.session_start().session_id
        first = mirror.port
        await mirror.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{first}/info")
        mirror.tryon(sid, barcode=EAN)  # the backlog survives the restart
        await mirror.start()
        assert mirror.port != first
        info = AsyncServiceInfo(service_type, name)
        assert await info.async_request(listener.zeroconf, 3000)
        assert info.port == mirror.port
        assert MirrorAdvert.from_properties(info.decoded_properties).id == "MM-9"
        async with http.ws_connect(mirror.url + "/events") as ws:
            await receive(ws)  # hello
            await receive(ws)  # session_start
            assert isinstance(await receive(ws), Tryon)


async def test_hw_mirror_serves_announces_generates_traffic_and_stops_on_sigterm(
    listener: AsyncZeroconf, http: aiohttp.ClientSession
) -> None:
    mirror_id = f"cli-{secrets.token_hex(3)}"
    command = [sys.executable, "-m", "hardware.cli", "mirror", "--id", mirror_id]
    process = await asyncio.create_subprocess_exec(
        *command, "--pace", "0.05", "--seed", "7", cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        banner = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
        url = banner.split()[-1]
        async with http.get(url + "/info") as response:
            assert MirrorInfo.model_validate_json(await response.read()).id == mirror_id
        lines = [await asyncio.wait_for(process.stdout.readline(), 10) for _ in range(3)]
        assert [json.loads(line)["counter"] for line in lines] == [1, 2, 3]
        assert json.loads(lines[0])["type"] == "session_start"
        async with MirrorDiscovery(listener, SERVICE_TYPE) as discovery:
            found = await discovery.wait_for(mirror_id, 5.0)
        assert found is not None
        assert found.url == url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0
