"""`create_app(source, token)` and starting it beside the agent."""

import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from agent.logs import register_secret
from agent.status_page.access import COOKIE, is_local, load_or_create_token, token_matches

log = logging.getLogger(__name__)

# A test scan waits at most this long for the engineer to pull the trigger.
TEST_SCAN_MAX_S = 120.0
TEST_SCAN_DEFAULT_S = 30.0
COOKIE_MAX_AGE_S = 8 * 3600  # one working day at the store
# The page's own files only; nothing is ever loaded from the internet.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
# Browsers only send custom headers cross-origin after a CORS preflight we never answer.
ACTION_HEADER = "X-Storeedge-Action"


class StatusSource(Protocol):
    """What the page shows and does; the agent runtime implements it."""

    async def snapshot(self) -> dict[str, Any]:
        """The agent's state as JSON."""
        ...

    async def test_print(self, device_id: str) -> dict[str, Any]:
        """Print a test page on `device_id`; raises DeviceTestError for a bad device."""
        ...

    async def test_scan(self, device_id: str, timeout_s: float) -> dict[str, Any]:
        """The next scan of `device_id`; TimeoutError if none comes in time."""
        ...


@dataclass(slots=True)
class PageCounters:
    """Refused requests by reason, shown on the page itself."""

    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        """Count one refusal."""
        self.refused[reason] = self.refused.get(reason, 0) + 1


SOURCE = web.AppKey("source", StatusSource)
TOKEN = web.AppKey("lan_token", str)
COUNTERS = web.AppKey("counters", PageCounters)


def create_app(source: StatusSource, lan_token: str | None) -> web.Application:
    """The page app; `lan_token` None means loopback only, whatever the bind address."""
    from agent.status_page import views

    app = web.Application(middlewares=[_access_middleware], client_max_size=64 * 1024)
    app[SOURCE] = source
    app[TOKEN] = lan_token or ""
    app[COUNTERS] = PageCounters()
    app.router.add_get("/", views.index)
    app.router.add_get("/static/{name}", views.static)
    app.router.add_get("/api/status", views.status)
    app.router.add_post("/api/devices/{device_id}/test-print", views.test_print)
    app.router.add_post("/api/devices/{device_id}/test-scan", views.test_scan)
    return app


@web.middleware
async def _access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    counters = request.app[COUNTERS]
    expected = request.app[TOKEN] or None
    if not is_local(request.remote, request.host):
        presented = _presented_token(request)
        if expected is None:
            counters.refuse("lan_disabled")
            return _refusal(request, 403, "this page is for the store box itself (loopback only)")
        if not token_matches(expected, presented):
            counters.refuse("bad_token" if presented else "no_token")
            return _refusal(
                request,
                401,
                "the LAN needs the page token: open the link that "
                "`storeedge agent status` prints on the box",
            )
        if request.query.get("token") and request.method == "GET":
            # Swap the token in the address bar for a cookie, so it is not left in history.
            redirect = web.HTTPSeeOther(location=request.rel_url.path)
            _set_cookie(redirect, expected)
            raise redirect
    if request.method == "POST" and request.headers.get(ACTION_HEADER) != "1":
        counters.refuse("no_action_header")
        return _refusal(request, 403, f"actions need the {ACTION_HEADER} header")
    response = await handler(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or request.cookies.get(COOKIE)


def _set_cookie(response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Strict", path="/"
    )


def _refusal(request: web.Request, status: int, reason: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": reason}, status=status)
    body = f"<!doctype html><meta name=viewport content='width=device-width'><p>{reason}</p>"
    return web.Response(text=body, status=status, content_type="text/html")


class AccessLogger(AbstractAccessLogger):
    """Method, path and status only: the query string may carry the LAN token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """One DEBUG line per request (the page polls every few seconds)."""
        self.logger.debug(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


def static_text(name: str) -> bytes:
    """One of the page's bundled files."""
    return (resources.files("agent.status_page") / "static" / name).read_bytes()


@dataclass(slots=True)
class RunningPage:
    """A started page; `url` is what to open on the box."""

    url: str
    port: int
    lan: bool
    _runner: web.AppRunner

    async def close(self) -> None:
        """Stop serving; idempotent."""
        await self._runner.cleanup()


async def start_status_page(runtime: Any) -> RunningPage:
    """Serve the page for `runtime` on `[status_page]` host:port; OSError if it cannot bind."""
    from agent.status_page.access import is_loopback_address
    from agent.status_page.source import RuntimeSource

    settings = runtime.config.status_page
    lan = not is_loopback_address(settings.host) and settings.host != "localhost"
    token = None
    if lan:
        path = settings.token_file or runtime.config.agent.state_dir / "statuspage.token"
        token = load_or_create_token(path)
        register_secret(token)
    app = create_app(RuntimeSource(runtime), token)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("agent.status_page.access"),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    url = f"http://127.0.0.1:{port}/"
    log.info("status page on %s:%d%s", settings.host, port, " (LAN, token required)" if lan else "")
    return RunningPage(url, port, lan, runner)
