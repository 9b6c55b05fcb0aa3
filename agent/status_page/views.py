"""The page's handlers: the page itself, its files, and the JSON API it polls."""

import math

from aiohttp import web

from agent.diagnostics.device_tests import DeviceTestError
from agent.status_page.server import (
    COUNTERS,
    SOURCE,
    STATIC,
    TEST_SCAN_DEFAULT_S,
    TEST_SCAN_MAX_S,
    static_text,
)


async def index(request: web.Request) -> web.Response:
    """The single page."""
    del request
    return web.Response(body=static_text("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    """app.js and style.css; nothing else is served."""
    name = request.match_info["name"]
    if name not in STATIC or name == "index.html":
        raise web.HTTPNotFound()
    return web.Response(body=static_text(name), content_type=STATIC[name], charset="utf-8")


async def status(request: web.Request) -> web.Response:
    """The agent's state, plus what this page refused."""
    doc = await request.app[SOURCE].snapshot()
    doc["status_page"] = {"refused": request.app[COUNTERS].refused}
    return web.json_response(doc)


async def test_print(request: web.Request) -> web.Response:
    """Print a test page and wait for the printer's confirmation (or say it is queued)."""
    device_id = request.match_info["device_id"]
    try:
        result = await request.app[SOURCE].test_print(device_id)
    except DeviceTestError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    return web.json_response(result, status=200 if result["status"] != "queued" else 202)


async def test_scan(request: web.Request) -> web.Response:
    """Wait for the next scan of the device and show how it was decoded."""
    device_id = request.match_info["device_id"]
    try:
        timeout_s = float(request.query.get("timeout", TEST_SCAN_DEFAULT_S))
    except ValueError:
        return web.json_response({"error": "timeout: seconds, as a number"}, status=400)
    if not math.isfinite(timeout_s) or not 0 < timeout_s <= TEST_SCAN_MAX_S:
        return web.json_response(
            {"error": f"timeout: between 0 and {TEST_SCAN_MAX_S:g} seconds"}, status=400
        )
    try:
        scan = await request.app[SOURCE].test_scan(device_id, timeout_s)
    except DeviceTestError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except TimeoutError:
        return web.json_response(
            {"error": f"no scan from {device_id} within {timeout_s:g} s"}, status=504
        )
    return web.json_response(scan)
