"""Login and logout."""

import hmac
import secrets
from datetime import UTC, datetime

from aiohttp import web

from cloud.console.keys import CONSOLE_SETTINGS, CONSOLE_STORAGE, LOGIN_THROTTLE, PASSWORDS
from cloud.console.render import render
from cloud.console.session import (
    CSRF_FIELD,
    TooManyAttempts,
    audit,
    clear_cookie,
    cookie_names,
    principal,
    set_cookie,
    start_session,
)
from cloud.keys import COUNTERS
from cloud.storage.console import AuditEntry

LOGIN_COOKIE_AGE_S = 3600
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_USERNAME = 64


async def get_login(request: web.Request) -> web.StreamResponse:
    """The login form, with a fresh login CSRF token in a cookie and the form."""
    return _form(request, "", "", 200)


async def post_login(request: web.Request) -> web.StreamResponse:
    """303 to where the user was going; the form again with 401 on a wrong password."""
    app = request.config_dict
    form = await request.post()
    username = str(form.get("username", "")).strip()[:MAX_USERNAME]
    password = str(form.get("password", ""))
    token = request.cookies.get(cookie_names(request)[1], "")
    sent = str(form.get(CSRF_FIELD, ""))
    if not token or not hmac.compare_digest(token.encode(), sent.encode()):
        app[COUNTERS].bad_requests["console_bad_csrf"] += 1
        return _form(request, username, "The form expired; please sign in again.", 403)
    remote = request.remote or ""
    throttle = app[LOGIN_THROTTLE]
    wait = throttle.blocked_for(remote)
    if wait > 0:
        raise TooManyAttempts(
            f"Too many failed sign-ins from your address; try again in {wait:.0f} s.",
            key="console_login_throttled",
        )
    passwords = app[PASSWORDS]
    found = await app[CONSOLE_STORAGE].user_login(username) if username else None
    encoded = found[1] if found is not None else None
    ok = await passwords.async_verify(encoded, password)
    if found is None or not ok or not found[0].active:
        throttle.failed(remote)
        app[COUNTERS].bad_requests["console_login_failed"] += 1
        await audit(request, "login_failed", username)
        return _form(request, username, "Wrong username or password.", 401)
    throttle.succeeded(remote)
    user = found[0]
    now = datetime.now(UTC)
    if encoded is not None and passwords.needs_rehash(encoded):
        # The configured cost changed since this password was set: upgrade it now.
        await app[CONSOLE_STORAGE].update_user(
            user.username, now, password_hash=await passwords.async_hash(password)
        )
    response = web.HTTPSeeOther(_next(request))
    await start_session(request, user, response)
    clear_cookie(request, response, cookie_names(request)[1])
    entry = AuditEntry(now, user.username, "login", "", "", request.remote or "")
    await app[CONSOLE_STORAGE].record_audit(entry)
    raise response


async def post_logout(request: web.Request) -> web.StreamResponse:
    """End the session and go back to the login page."""
    await request.config_dict[CONSOLE_STORAGE].delete_session(principal(request).token_hash)
    await audit(request, "logout")
    response = web.HTTPSeeOther("/console/login")
    clear_cookie(request, response, cookie_names(request)[0])
    raise response


def _form(request: web.Request, username: str, error: str, status: int) -> web.StreamResponse:
    token = secrets.token_urlsafe(24)
    context = {
        "username": username,
        "error": error,
        "login_csrf": token,
        "next": _next(request),
        "cookie_warning": _cookie_warning(request),
    }
    response = render(request, "login.html", context, status)
    set_cookie(request, response, cookie_names(request)[1], token, LOGIN_COOKIE_AGE_S)
    return response


def _cookie_warning(request: web.Request) -> bool:
    # Browsers keep Secure cookies only from https:// or loopback: say so before the login
    # silently fails to stick.
    if not request.config_dict[CONSOLE_SETTINGS].secure_cookies or request.secure:
        return False
    if request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return False
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    return host not in LOOPBACK_HOSTS


def _next(request: web.Request) -> str:
    # Only a path inside the console: never an open redirect to another site.
    target = request.query.get("next", "/console/")
    if not target.startswith("/console/") or "\\" in target:
        return "/console/"
    return target
