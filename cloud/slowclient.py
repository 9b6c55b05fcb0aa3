"""Slow clients (slowloris) are cut off: a deadline on the first request's head, on every body.

aiohttp bounds the wait between requests of a kept-alive connection (`keepalive_timeout`)
but not the wait for the first request's head, so a client that opens connections and
dribbles header bytes could hold them all. `GuardedAppRunner` closes any connection whose
first request head is not complete within `header_timeout_s`; `read_body` bounds the body.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cloud.config import CloudConfig
from cloud.counters import Counters
from cloud.errors import RequestTimeout
from cloud.keys import CONFIG, COUNTERS

# Between requests on a kept-alive connection; aiohttp's default is 75 s.
KEEPALIVE_TIMEOUT_S = 15.0


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections must send a whole request head in time."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        super().__init__(app, **kwargs)
        self._deadline_s = app[CONFIG].header_timeout_s
        self._counters = app[COUNTERS]

    @property
    def server(self) -> Any:
        """The protocol factory sites listen with: aiohttp's, plus the head deadline."""
        inner = super().server
        if inner is None:
            return None
        return _guarded_factory(inner, self._deadline_s, self._counters)


def _guarded_factory(
    inner: Callable[[], RequestHandler], deadline_s: float, counters: Counters
) -> Callable[[], RequestHandler]:
    def factory() -> RequestHandler:
        handler = inner()
        # A strong reference (RequestHandler has no __weakref__ slot), dropped at the deadline.
        asyncio.get_running_loop().call_later(deadline_s, _expire, handler, counters)
        return handler

    return factory


def _expire(handler: RequestHandler, counters: Counters) -> None:
    if handler.transport is None or handler.transport.is_closing():
        return
    # aiohttp counts a request once its head is parsed (RequestHandler.data_received).
    if getattr(handler, "_request_count", 1) == 0:
        counters.bad_requests["slow_headers"] += 1
        handler.transport.close()


async def read_body(request: web.Request) -> bytes:
    """`request.read()` within the body deadline, or RequestTimeout (408)."""
    try:
        async with asyncio.timeout(request.app[CONFIG].body_timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise RequestTimeout("request body too slow", key="slow_body") from exc


async def serve(
    app: web.Application,
    config: CloudConfig,
    say: Callable[[str], None],
    access_log: logging.Logger | None = None,
) -> None:
    """Serve `app` on the configured address until SIGTERM or SIGINT, then clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    runner = GuardedAppRunner(app, access_log=access_log)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        say(f"======== Running on http://{config.host}:{config.port} ========")
        await stop.wait()
    finally:
        await runner.cleanup()
