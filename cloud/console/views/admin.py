"""Admin pages: accounts (add, change role, disable, reset password) and the audit log."""

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cloud.console.keys import CONSOLE_SETTINGS, CONSOLE_STORAGE, PASSWORDS
from cloud.console.passwords import check_new_password
from cloud.console.render import render
from cloud.console.session import audit, requires
from cloud.console.views import params
from cloud.console.views.auth import MAX_USERNAME
from cloud.errors import BadRequest, NotFound, UsageError
from cloud.storage.console import ROLES, Role

USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def check_username(value: str) -> str:
    """A username of 1-64 letters, digits and `. _ - @`, else UsageError."""
    if not 1 <= len(value) <= MAX_USERNAME or not set(value) <= USERNAME_CHARS:
        raise UsageError(f"username: use 1-{MAX_USERNAME} characters from A-Z a-z 0-9 . _ - @")
    return value


def check_role(value: str) -> Role:
    """One of the roles, else UsageError."""
    for role in ROLES:
        if value == role:
            return role
    raise UsageError(f"role: expected one of {', '.join(ROLES)}")


@requires("manage_users")
async def get_users(request: web.Request) -> web.StreamResponse:
    """Every account, with forms to add one and change each."""
    return await _users_page(request, "", 200)


@requires("manage_users")
async def post_users(request: web.Request) -> web.StreamResponse:
    """Add an account; the page again with the reason when refused."""
    form = await request.post()
    try:
        username = check_username(str(form.get("username", "")).strip())
        role = check_role(str(form.get("role", "")))
        password = check_new_password(str(form.get("password", "")))
        hashed = await request.config_dict[PASSWORDS].async_hash(password)
        await request.config_dict[CONSOLE_STORAGE].add_user(
            username, hashed, role, datetime.now(UTC)
        )
    except UsageError as exc:
        return await _users_page(request, str(exc), 400)
    await audit(request, "user_add", username, f"role {role}")
    raise web.HTTPSeeOther("/console/users")


@requires("manage_users")
async def post_user(request: web.Request) -> web.StreamResponse:
    """Change one account: `action` is role, disable, enable or password."""
    username = request.match_info["username"]
    form = await request.post()
    action = str(form.get("action", ""))
    changes: dict[str, Any] = {}
    try:
        if action == "role":
            changes["role"] = check_role(str(form.get("role", "")))
        elif action in ("disable", "enable"):
            changes["disabled"] = action == "disable"
        elif action == "password":
            password = check_new_password(str(form.get("password", "")))
            changes["password_hash"] = await request.config_dict[PASSWORDS].async_hash(password)
        else:
            raise BadRequest("action: expected role, disable, enable or password")
        updated = await request.config_dict[CONSOLE_STORAGE].update_user(
            username, datetime.now(UTC), **changes
        )
    except UsageError as exc:
        return await _users_page(request, str(exc), 400)
    if updated is None:
        raise NotFound(f"There is no user {username!r}.")
    detail = f"role {changes['role']}" if action == "role" else ""
    await audit(request, f"user_{action}", username, detail)
    raise web.HTTPSeeOther("/console/users")


@requires("view_audit")
async def get_audit(request: web.Request) -> web.StreamResponse:
    """The audit log, newest first."""
    size = request.config_dict[CONSOLE_SETTINGS].page_size
    number = params.page(request.rel_url.query)
    entries, total = await request.config_dict[CONSOLE_STORAGE].list_audit(
        (number - 1) * size, size
    )
    context = {
        "entries": entries,
        "total": total,
        "number": number,
        "pages": max(1, -(-total // size)),
        "link": lambda page=1: f"/console/audit?page={page}",
    }
    return render(request, "audit.html", context)


async def _users_page(request: web.Request, error: str, status: int) -> web.StreamResponse:
    users = await request.config_dict[CONSOLE_STORAGE].list_users()
    return render(request, "users.html", {"users": users, "roles": ROLES, "error": error}, status)
