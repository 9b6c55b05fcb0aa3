"""Console pages over real loopback HTTP with real ingest traffic, evaluator ticks and SSE."""

import asyncio
import html
import re
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient, AiohttpServer

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.console.keys import LIVE_HUB
from cloud.keys import COUNTERS
from console.console_helpers import (
    PRINTER_PAPER_OUT,
    SCANNER_OFFLINE,
    SCANNER_ONLINE,
    Client,
    add_user,
    enroll_agent,
    login,
    tick,
)


async def viewer(client: Client, role: str = "viewer") -> str:
    await add_user(client, role, role)
    return await login(client, role)


async def test_an_empty_fleet_says_how_to_add_a_store(client: Client) -> None:
    await viewer(client)
    page = await (await client.get("/console/")).text()
    assert "No stores yet" in page
    assert "storeedge cloud enroll-code --store" in page


async def test_fleet_shows_each_store_with_lamp_backlog_faults_and_totals(client: Client) -> None:
    await viewer(client)
    busy = await enroll_agent(client, "store-busy")
    await busy.heartbeat(
        [SCANNER_ONLINE, PRINTER_PAPER_OUT], backlog_events=12, oldest_unsynced_age_s=30.0
    )
    await busy.scans("scanner-front", recognised=4, unrecognised=1)
    await enroll_agent(client, "store-quiet")
    await tick(client)
    page = await (await client.get("/console/")).text()
    row = re.search(r'<tr data-store="store-busy".*?</tr>', page, re.S)
    assert row, page
    assert "Online" in row.group(0)
    assert ">12<" in row.group(0)  # backlog
    assert '<span class="bad">1</span>' in row.group(0)  # one device fault
    assert re.search(r'data-total="stores">2<', page)
    assert re.search(r'data-total="online">2<', page)  # enrolled, first heartbeat pending
    assert re.search(r'data-total="faults">1<', page)
    assert re.search(r'data-total="events_today">5<', page)
    faults = await (await client.get("/console/?faults=1")).text()
    assert 'data-store="store-busy"' in faults
    assert 'data-store="store-quiet"' not in faults
    assert "1 store match" in faults
    search = await (await client.get("/console/?q=QUIET")).text()
    assert 'data-store="store-quiet"' in search
    assert 'data-store="store-busy"' not in search
    fragment = await client.get("/console/?fragment=live&sort=backlog")
    text = await fragment.text()
    assert text.lstrip().startswith('<ul class="totals"')
    assert text.index("store-busy") < text.index("store-quiet")  # most backlog first


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=bogus", "sort: 'bogus' is not one of"),
        ("status=sleepy", "status: 'sleepy' is not one of"),
        ("page=0", "page: expected a number"),
        ("faults=maybe", "faults: expected 1 or 0"),
    ],
)
async def test_bad_fleet_parameters_get_a_400_page_naming_them(
    client: Client, query: str, message: str
) -> None:
    await viewer(client)
    response = await client.get(f"/console/?{query}")
    assert response.status == 400
    assert message in html.unescape(await response.text())
    assert sum(client.app[COUNTERS].bad_requests.values()) == 1


async def test_a_page_past_the_end_offers_the_first_one(client: Client) -> None:
    await viewer(client)
    await enroll_agent(client, "store-1")
    await tick(client)
    page = await (await client.get("/console/?page=9")).text()
    assert "This page is past the last one" in page


async def test_store_page_shows_agent_devices_history_diagnostics_and_chart(client: Client) -> None:
    await viewer(client)
    agent = await enroll_agent(client, "store-a")
    await agent.heartbeat([SCANNER_ONLINE], clock_offset_s=-1.25)
    await agent.send(
        ("scanner-front", "device.status", {"state": "offline", "condition": "disconnected"})
    )
    await agent.send(
        ("scanner-front", "device.status", {"state": "online", "condition": "connected"})
    )
    evil = {
        "raw_b64": "PA==",
        "text": "<img src=x onerror=alert(1)>",
        "classification": "unrecognised",
        "reason": "not a GTIN",
    }
    await agent.send(("scanner-front", "scan", evil))
    await agent.scans("scanner-front", recognised=3, unrecognised=0)
    await tick(client)
    response = await client.get("/console/stores/store-a")
    assert response.status == 200
    page = await response.text()
    assert "<img src=x" not in page  # scanned text is escaped everywhere
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "-1.250 s" in page
    assert page.count("disconnected") >= 1
    assert re.search(r"<td data-label=\"Unrecognised\" class=\"num\">1</td>", page)
    assert "25%" in page
    assert '<svg class="chart"' in page
    assert 'aria-label="Events per hour over the last 24 hours: 6 in all"' in page
    devices = await (await client.get("/console/stores/store-a?fragment=devices")).text()
    assert 'data-device="scanner-front" data-state="online"' in devices


async def test_unknown_and_malformed_stores(client: Client) -> None:
    await viewer(client)
    missing = await client.get("/console/stores/nope")
    assert missing.status == 404
    assert "There is no store" in await missing.text()
    bad = await client.get("/console/stores/bad%20id")
    assert bad.status == 400


async def test_alerts_page_filters_and_an_engineer_acknowledges(client: Client) -> None:
    csrf = await viewer(client, "engineer")
    a = await enroll_agent(client, "store-a")
    b = await enroll_agent(client, "store-b")
    await a.heartbeat([SCANNER_OFFLINE])
    await b.heartbeat([PRINTER_PAPER_OUT])
    await tick(client)
    page = await (await client.get("/console/alerts")).text()
    assert "2 alerts." in page
    assert "Scanner disconnected" in page
    assert "Printer out of paper" in page
    only = await (await client.get("/console/alerts?rule=printer_paper_out")).text()
    assert "1 alert." in only
    assert "store-b" in only
    assert 'data-alert="scanner_disconnected' not in only
    alert_id = re.search(r"/console/alerts/(\d+)/ack", only)
    assert alert_id
    ack = await client.post(
        f"/console/alerts/{alert_id.group(1)}/ack",
        data={"_csrf": csrf, "back": "/console/alerts?rule=printer_paper_out"},
        allow_redirects=False,
    )
    assert ack.headers["Location"] == "/console/alerts?rule=printer_paper_out"
    acked = await (await client.get("/console/alerts?state=acknowledged")).text()
    assert "ack by engineer" in acked
    await b.heartbeat([{**PRINTER_PAPER_OUT, "state": "online", "condition": "recovered"}])
    await tick(client)
    resolved = await (await client.get("/console/alerts?state=resolved")).text()
    assert "store-b" in resolved
    bad = await client.get("/console/alerts?rule=nope")
    assert bad.status == 400


async def read_sse(response: ClientResponse, want: str, timeout: float = 5.0) -> dict[str, Any]:
    """Read the SSE stream until an event named `want`; its JSON data."""
    event = ""
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == want:
                data: dict[str, Any] = orjson.loads(line.split(":", 1)[1])
                return data


async def test_live_stream_delivers_new_events_of_the_watched_store(client: Client) -> None:
    await viewer(client)
    agent = await enroll_agent(client, "store-a")
    other = await enroll_agent(client, "store-b")
    stream = await client.get(
        "/console/live?store=store-a", headers={"Accept": "text/event-stream"}
    )
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    await read_sse(stream, "hello")
    await other.scans("scanner-front", recognised=1, unrecognised=0)
    await agent.send(
        (
            "scanner-front",
            "scan",
            {"raw_b64": "eA==", "text": "LIVE-1", "classification": "product"},
        )
    )
    tail = await read_sse(stream, "tail")
    assert (tail["device_id"], tail["kind"], tail["text"]) == (
        "scanner-front",
        "scan",
        "product: LIVE-1",
    )
    await agent.heartbeat([SCANNER_OFFLINE])
    await tick(client)
    # A versions event sent before the tick (the scans changed the fleet) may still be queued
    # in the stream: the alert must show in one of the next ones, within the read timeout.
    async with asyncio.timeout(5.0):
        while (await read_sse(stream, "versions"))["alerts"] < 1:
            pass
    stream.close()


async def test_live_stream_needs_a_session(client: Client) -> None:
    response = await client.get("/console/live", headers={"Accept": "text/event-stream"})
    assert response.status == 401


async def test_shutdown_ends_open_live_streams_at_once(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, config: CloudConfig
) -> None:
    from aiohttp import CookieJar

    server = await aiohttp_server(create_app(replace(config)))
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client: Client = await aiohttp_client(server, cookie_jar=jar)  # type: ignore[assignment]
    await viewer(client)
    stream = await client.get("/console/live", headers={"Accept": "text/event-stream"})
    await read_sse(stream, "hello")
    assert client.app[LIVE_HUB].subscribers == 1
    started = asyncio.get_running_loop().time()
    await server.close()
    assert asyncio.get_running_loop().time() - started < 5
    assert client.app[LIVE_HUB].subscribers == 0
