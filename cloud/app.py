"""`create_app(config)`: the aiohttp application of the cloud service."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from cloud.auth import AgentAuthenticator
from cloud.config import CloudConfig
from cloud.console.app import setup_console
from cloud.counters import Counters
from cloud.errors import Unavailable
from cloud.gate import Gate
from cloud.keys import (
    AGENT_AUTH,
    AGENT_GATE,
    CONFIG,
    COUNTERS,
    COUPON_STORAGE,
    INGEST_GATE,
    METRICS,
    SETTINGS_STORAGE,
    STORAGE,
)
from cloud.metrics import Metrics
from cloud.middleware import error_middleware, metrics_middleware
from cloud.routes import setup_routes
from cloud.storage import open_storage
from cloud.storage.coupons import coupon_storage_for
from cloud.storage.settings import config_storage_for

log = logging.getLogger(__name__)
# After a failed maintenance round, wait this long (not the full interval) before the next.
MAINTENANCE_RETRY_S = 30.0


def create_app(config: CloudConfig) -> web.Application:
    """A ready-to-run app; storage opens on startup and closes on cleanup."""
    counters = Counters()
    app = web.Application(
        # Outermost first: metrics see the status error translation settled on.
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=config.max_body_bytes,
        # We inflate gzip ourselves with a hard output bound (cloud.batch.decode_body), so a
        # bomb is refused at the limit and the 413 is ours to word.
        handler_args={"auto_decompress": False},
    )
    app[CONFIG] = config
    app[COUNTERS] = counters
    app[METRICS] = metrics = Metrics(counters)
    app[INGEST_GATE] = Gate(config.max_inflight_batches, "batches", config.max_inflight_bytes)
    app[AGENT_GATE] = Gate(config.max_inflight_requests, "requests")
    metrics.inflight.labels("events").set_function(lambda: app[INGEST_GATE].in_flight)
    metrics.inflight.labels("other").set_function(lambda: app[AGENT_GATE].in_flight)
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_maintenance_ctx)
    setup_routes(app)
    setup_console(app)
    return app


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    storage = await open_storage(config.db_url, pool_size=config.db_pool_size)
    try:
        # Inside the try: a start that fails here still closes the pool it opened.
        app[STORAGE] = storage
        app[AGENT_AUTH] = AgentAuthenticator(storage)
        app[COUPON_STORAGE] = coupon_storage_for(storage)
        app[SETTINGS_STORAGE] = config_storage_for(storage)
        yield
    finally:
        await storage.close()


async def _maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(_maintain(app, stop), name="storage-maintenance")
    try:
        yield
    finally:
        # Not cancelled: a round in progress finishes its DDL (bounded by the backend's lock
        # timeout) rather than leave a half-made partition behind.
        stop.set()
        await task


async def _maintain(app: web.Application, stop: asyncio.Event) -> None:
    """Storage upkeep now and every `maintenance_interval_s` until `stop`; failures delay it."""
    storage = app[STORAGE]
    interval = app[CONFIG].maintenance_interval_s
    while not stop.is_set():
        delay = interval
        try:
            await storage.maintain(datetime.now(UTC))
        except Unavailable:
            log.exception("storage maintenance failed; retrying in %.0f s", MAINTENANCE_RETRY_S)
            app[COUNTERS].errors["maintenance"] += 1
            delay = min(interval, MAINTENANCE_RETRY_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
