"""`create_app(config)`: the aiohttp application of the cloud service."""

from collections.abc import AsyncIterator

from aiohttp import web

from cloud.auth import AgentAuthenticator
from cloud.config import CloudConfig
from cloud.console.app import setup_console
from cloud.counters import Counters
from cloud.gate import Gate
from cloud.keys import (
    AGENT_AUTH,
    CONFIG,
    COUNTERS,
    COUPON_STORAGE,
    INGEST_GATE,
    SETTINGS_STORAGE,
    STORAGE,
)
from cloud.middleware import error_middleware
from cloud.routes import setup_routes
from cloud.storage import open_storage
from cloud.storage.coupons import coupon_storage_for
from cloud.storage.settings import config_storage_for


def create_app(config: CloudConfig) -> web.Application:
    """A ready-to-run app; storage opens on startup and closes on cleanup."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.max_body_bytes,
        # We inflate gzip ourselves with a hard output bound (cloud.batch.decode_body), so a
        # bomb is refused at the limit and the 413 is ours to word.
        handler_args={"auto_decompress": False},
    )
    app[CONFIG] = config
    app[COUNTERS] = Counters()
    app[INGEST_GATE] = Gate(config.max_inflight_batches)
    app.cleanup_ctx.append(_storage_ctx)
    setup_routes(app)
    setup_console(app)
    return app


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = await open_storage(app[CONFIG].db_url)
    app[STORAGE] = storage
    app[AGENT_AUTH] = AgentAuthenticator(storage)
    app[COUPON_STORAGE] = coupon_storage_for(storage)
    app[SETTINGS_STORAGE] = config_storage_for(storage)
    try:
        yield
    finally:
        await storage.close()
