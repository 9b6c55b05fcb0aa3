"""Jinja2 set-up for the console and the one way views render a page."""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from cloud.console import fmt
from cloud.console.keys import CONSOLE_SETTINGS, PRINCIPAL
from cloud.console.roles import can
from cloud.console.rules import RULES
from protocol.coupons import format_value

STATIC_DIR = files("cloud.console") / "static"


def _static_version() -> str:
    # Content hash in every asset URL: browsers may cache the assets forever, and a new
    # build still reaches them at once.
    digest = hashlib.sha256()
    for name in sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file()):
        digest.update((STATIC_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


STATIC_VERSION = _static_version()


def setup_templates(app: web.Application) -> None:
    """Attach the template environment (autoescaping everything) to the console app."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("cloud.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=fmt.time_tag,
        age=fmt.age,
        num=fmt.num,
        lamp=fmt.lamp_tag,
        device=fmt.device_state_tag,
        money=format_value,
    )
    env.globals.update(rules=RULES, static_version=STATIC_VERSION, lamp_text=fmt.LAMP_TEXT)


def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    """The named template rendered with `context` plus the common page context."""
    return aiohttp_jinja2.render_template(
        template, request, {**_common(request), **context}, status=status
    )


def _common(request: web.Request) -> dict[str, Any]:
    principal = request.get(PRINCIPAL)
    user = principal.session.user if principal else None
    return {
        "user": user,
        "csrf": principal.session.csrf_token if principal else "",
        "can": lambda permission: user is not None and can(user.role, permission),
        "now": datetime.now(UTC),
        "settings": request.config_dict[CONSOLE_SETTINGS],
        "path": request.path,
        "since": fmt.since,
        "lamp_of": lambda row, now: fmt.lamp(row, now, request.config_dict[CONSOLE_SETTINGS]),
    }
