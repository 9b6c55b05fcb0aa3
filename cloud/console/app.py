"""`setup_console(app)`: mount the console under /console with its storage and background work."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from cloud.console.coupon_adapter import StorageCoupons
from cloud.console.coupons import CouponSource
from cloud.console.evaluator import AlertEvaluator
from cloud.console.keys import (
    CONSOLE_SETTINGS,
    CONSOLE_STORAGE,
    COUPONS,
    EVALUATOR,
    LIVE_HUB,
    LOGIN_THROTTLE,
    PASSWORDS,
)
from cloud.console.live import LiveHub
from cloud.console.passwords import Passwords
from cloud.console.render import STATIC_DIR, setup_templates
from cloud.console.session import console_middleware
from cloud.console.throttle import LoginThrottle
from cloud.console.views import admin, alerts, auth, coupons, fleet, live, store
from cloud.keys import CONFIG, COUPON_STORAGE
from cloud.storage import check_db_url, sqlite_path
from cloud.storage.console import ConsoleStorage

PREFIX = "/console"


def setup_console(app: web.Application, coupon_source: CouponSource | None = None) -> None:
    """Mount the console on `app` (unless disabled in its config); `/` redirects to it.

    `coupon_source` None: the Coupons page reads the cloud's own coupon storage.
    """
    settings = app[CONFIG].console
    if not settings.enabled:
        return
    app[CONSOLE_SETTINGS] = settings
    if coupon_source is not None:
        app[COUPONS] = coupon_source
    app[PASSWORDS] = Passwords(settings)
    app[LOGIN_THROTTLE] = LoginThrottle(settings.login_max_failures, settings.login_window_s)
    # After the storage context: the console's tables live in the same database.
    app.cleanup_ctx.append(_console_ctx)
    # Before cleanup: SSE streams end first, so a graceful stop does not wait on them.
    app.on_shutdown.append(_close_live)
    console = web.Application(middlewares=[console_middleware])
    setup_templates(console)
    _routes(console)
    app.add_subapp(PREFIX, console)
    app.router.add_get("/", _to_console, name="root")
    app.router.add_get(PREFIX, _to_console, name="console_bare")


def _routes(console: web.Application) -> None:
    add_get, add_post = console.router.add_get, console.router.add_post
    add_get("/login", auth.get_login, name="login")
    add_post("/login", auth.post_login, name="login_post")
    add_post("/logout", auth.post_logout, name="logout")
    add_get("/", fleet.get_fleet, name="fleet")
    add_get("/stores/{store_id}", store.get_store, name="store")
    add_get("/alerts", alerts.get_alerts, name="alerts")
    add_post("/alerts/{alert_id}/ack", alerts.post_acknowledge, name="alert_ack")
    add_get("/coupons", coupons.get_coupons, name="coupons")
    add_post("/coupons/issue", coupons.post_issue, name="coupons_issue")
    add_get("/users", admin.get_users, name="users")
    add_post("/users", admin.post_users, name="users_add")
    add_post("/users/{username}", admin.post_user, name="user_change")
    add_get("/audit", admin.get_audit, name="audit")
    add_get("/live", live.get_live, name="live")
    console.router.add_static("/static", str(STATIC_DIR), name="static")


async def open_console_storage(db_url: str) -> ConsoleStorage:
    """The console storage of the database at `db_url`, by its scheme (SQLite or PostgreSQL)."""
    if check_db_url(db_url) == "postgresql":
        from cloud.storage.postgres.console import PostgresConsoleStorage

        return await PostgresConsoleStorage.open(db_url)
    from cloud.storage.console_sqlite import SqliteConsoleStorage

    return await SqliteConsoleStorage.open(sqlite_path(db_url))


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONSOLE_SETTINGS]
    storage = await open_console_storage(app[CONFIG].db_url)
    hub = LiveHub(storage, settings.live_poll_s)
    evaluator = AlertEvaluator(storage, settings)
    app[CONSOLE_STORAGE] = storage
    if COUPONS not in app:
        # The coupon storage opened in create_app's storage context, which runs before this.
        app[COUPONS] = StorageCoupons(app[COUPON_STORAGE])
    app[LIVE_HUB] = hub
    app[EVALUATOR] = evaluator
    tasks = [
        asyncio.create_task(hub.run(), name="console-live"),
        asyncio.create_task(evaluator.run(), name="console-evaluator"),
    ]
    try:
        yield
    finally:
        hub.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await storage.close()


async def _close_live(app: web.Application) -> None:
    if LIVE_HUB in app:
        app[LIVE_HUB].close()


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")
