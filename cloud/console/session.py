"""Sessions, CSRF and access control of the console, and its HTML error pages.

Every console request passes `console_middleware`: it resolves the session cookie, sends
anonymous visitors to the login page, checks the CSRF token and Origin of every POST, renders
errors as pages (the JSON API keeps its own error shape), and sets the security headers.
"""

import functools
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from cloud.console.keys import CONSOLE_SETTINGS, CONSOLE_STORAGE, PRINCIPAL, Principal
from cloud.console.render import render
from cloud.console.roles import can
from cloud.credentials import hash_secret
from cloud.errors import RequestError, StorageError, UsageError
from cloud.keys import COUNTERS
from cloud.storage.console import AuditEntry, UserRecord

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-storeedge_session"
LOGIN_COOKIE = "__Host-storeedge_login"
# Without Secure a browser refuses the __Host- prefix, so plain-HTTP deployments drop it.
PLAIN_SESSION_COOKIE = "storeedge_session"
PLAIN_LOGIN_COOKIE = "storeedge_login"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC_ROUTES = frozenset({"login", "login_post", "static"})
# 'self' only: every script, style and image is served by the console itself.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class Forbidden(RequestError):
    """The signed-in role may not do this (HTTP 403)."""

    status: ClassVar[int] = 403


class TooManyAttempts(RequestError):
    """Too many failed logins from this address (HTTP 429)."""

    status: ClassVar[int] = 429


def cookie_names(request: web.Request) -> tuple[str, str]:
    """(session, login) cookie names for this deployment's cookie security."""
    if request.config_dict[CONSOLE_SETTINGS].secure_cookies:
        return SESSION_COOKIE, LOGIN_COOKIE
    return PLAIN_SESSION_COOKIE, PLAIN_LOGIN_COOKIE


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:  # fmt: skip
    """HttpOnly, SameSite=Lax, Path=/, Secure unless turned off."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.config_dict[CONSOLE_SETTINGS].secure_cookies,
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    """Expire a cookie set by `set_cookie` (same attributes, or a browser keeps __Host- ones)."""
    set_cookie(request, response, name, "", 0)


async def start_session(
    request: web.Request, user: UserRecord, response: web.StreamResponse
) -> None:
    """Create a session for `user` and set its cookie on `response`."""
    settings = request.config_dict[CONSOLE_SETTINGS]
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.session_ttl_s)
    await request.config_dict[CONSOLE_STORAGE].create_session(
        hash_secret(token), user.user_id, secrets.token_urlsafe(32), now, expires
    )
    set_cookie(request, response, cookie_names(request)[0], token, int(settings.session_ttl_s))


def principal(request: web.Request) -> Principal:
    """The signed-in user of a request past the middleware."""
    return request[PRINCIPAL]


async def audit(request: web.Request, action: str, target: str = "", detail: str = "") -> None:
    """Record an action of the signed-in user (or `anonymous`) in the audit log."""
    who = request.get(PRINCIPAL)
    actor = who.session.user.username if who else "anonymous"
    entry = AuditEntry(datetime.now(UTC), actor, action, target[:200], detail[:500],
                       request.remote or "")  # fmt: skip
    await request.config_dict[CONSOLE_STORAGE].record_audit(entry)


View = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(permission: str) -> Callable[[View], View]:
    """Let the view run only for roles holding `permission`; 403 page otherwise."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = principal(request).session.user
            if not can(user.role, permission):
                raise Forbidden(
                    f"Your role ({user.role}) may not do this. Ask an admin if you need to.",
                    key="console_forbidden",
                )
            return await view(request)

        return guarded

    return decorate


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, check CSRF, render errors as pages, add security headers."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            _secure(exc)
            raise
        response = _error_page(request, exc.status, exc.reason)
    except RequestError as exc:
        request.config_dict[COUNTERS].bad_requests[exc.key] += 1
        response = _error_page(request, exc.status, exc.reason)
    except UsageError as exc:
        request.config_dict[COUNTERS].bad_requests["console_usage"] += 1
        response = _error_page(request, 400, str(exc))
    except StorageError:
        request.config_dict[COUNTERS].errors["storage"] += 1
        log.exception("storage failed on %s %s", request.method, request.path)
        response = _error_page(request, 503, "The database is not answering; retry shortly.")
        response.headers["Retry-After"] = "5"
    _secure(response, request.match_info.route.name == "static")
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.name
    if route in PUBLIC_ROUTES:
        return await handler(request)
    found = await _session(request)
    if found is None:
        if request.method == "GET" and not _wants_fragment(request):
            raise web.HTTPSeeOther(f"/console/login?next={quote(request.path_qs, safe='')}")
        raise web.HTTPUnauthorized(reason="Your session has ended; sign in again.")
    request[PRINCIPAL] = found
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, found.session.csrf_token)
    return await handler(request)


async def _session(request: web.Request) -> Principal | None:
    token = request.cookies.get(cookie_names(request)[0])
    if not token or len(token) > 128:
        return None
    settings = request.config_dict[CONSOLE_SETTINGS]
    token_hash = hash_secret(token)
    record = await request.config_dict[CONSOLE_STORAGE].get_session(
        token_hash, datetime.now(UTC), settings.session_idle_s
    )
    return None if record is None else Principal(record, token_hash)


async def check_csrf(request: web.Request, expected: str) -> None:
    """Forbidden unless the form field or header carries `expected` and Origin is ours."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise Forbidden("cross-site request refused", key="console_bad_origin")
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if not supplied or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Forbidden(
            "The form was stale or not sent from this console; reload the page and retry.",
            key="console_bad_csrf",
        )


def _wants_fragment(request: web.Request) -> bool:
    return "fragment" in request.query or "text/event-stream" in request.headers.get("Accept", "")


def _error_page(request: web.Request, status: int, reason: str) -> web.StreamResponse:
    if _wants_fragment(request):
        return web.Response(status=status, text=reason)
    try:
        return render(request, "error.html", {"status": status, "reason": reason}, status)
    except Exception:  # the error page itself failed: still answer, in plain text
        log.exception("rendering the error page failed")
        return web.Response(status=status, text=reason)


def _secure(response: web.StreamResponse, static: bool = False) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.prepared:
        return
    # Asset URLs carry a content hash (render.STATIC_VERSION); pages show live data.
    cache = "public, max-age=31536000, immutable" if static else "no-store"
    response.headers.setdefault("Cache-Control", cache)
