"""GET /console/live: Server-Sent Events with change counters and, per store, the event tail."""

import asyncio
import contextlib

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from cloud.console.describe import tail_item
from cloud.console.keys import LIVE_HUB
from cloud.console.live import Subscription
from cloud.console.session import requires
from cloud.console.views import params
from cloud.errors import BadRequest
from cloud.storage.console import TailEvent

# A comment line this often keeps proxies from closing an idle stream.
PING_S = 15.0
# Tells the browser's EventSource how long to wait before reconnecting (HTML §9.2.6).
RETRY_MS = 2000


@requires("view")
async def get_live(request: web.Request) -> web.StreamResponse:
    """`versions` events whenever something changes; `tail` events for `?store=` after `?after=`."""
    store = params.optional_store(request.rel_url.query)
    after_raw = request.rel_url.query.get("after", "0") or "0"
    if not after_raw.isdigit() or len(after_raw) > 18:
        raise BadRequest("after: expected a cursor number", key="console_bad_after")
    hub = request.config_dict[LIVE_HUB]
    sub = hub.subscribe(store, int(after_raw))
    try:
        async with sse_response(request, ping_interval=PING_S) as stream:
            # The browser left (navigated away, closed the tab): nothing to answer.
            with contextlib.suppress(ConnectionResetError):
                await _pump(stream, sub)
    finally:
        hub.unsubscribe(sub)
    return stream


async def _pump(stream: EventSourceResponse, sub: Subscription) -> None:
    await stream.send("{}", event="hello", retry=RETRY_MS)
    while stream.is_connected():
        try:
            # Wake up now and then: a browser that went away shows only as a failed ping,
            # and nothing else would end this wait.
            async with asyncio.timeout(PING_S):
                item = await sub.queue.get()
        except TimeoutError:
            continue
        if item is None:  # the hub closed: the replica is shutting down
            return
        kind, data = item
        if kind == "tail" and isinstance(data, TailEvent):
            payload = orjson.dumps(tail_item(data.cursor, data.body)).decode()
            await stream.send(payload, event="tail", id=str(data.cursor))
        else:
            await stream.send(orjson.dumps(data).decode(), event=kind)
