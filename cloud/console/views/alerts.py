"""The alerts page: filter by state, rule and store; acknowledge (engineers and admins)."""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cloud.console.keys import CONSOLE_SETTINGS, CONSOLE_STORAGE
from cloud.console.render import render
from cloud.console.rules import RULES
from cloud.console.session import audit, principal, requires
from cloud.console.views import params
from cloud.errors import BadRequest
from cloud.storage.console import ALERT_STATES, AlertQuery

STATE_FILTERS = ("active", *ALERT_STATES)


@requires("view")
async def get_alerts(request: web.Request) -> web.StreamResponse:
    """Alerts newest first; `?fragment=live` renders only the table."""
    query = request.rel_url.query
    size = request.config_dict[CONSOLE_SETTINGS].page_size
    state = params.choice(query, "state", STATE_FILTERS, "active") or "active"
    rule = params.choice(query, "rule", tuple(RULES), None)
    store = params.optional_store(query)
    number = params.page(query)
    alerts, total = await request.config_dict[CONSOLE_STORAGE].list_alerts(
        AlertQuery(
            state=None if state == "active" else state,  # type: ignore[arg-type]
            rule=rule,
            store_id=store,
            offset=(number - 1) * size,
            limit=size,
        )
    )
    filters = {"state": state, "rule": rule or "", "store": store or ""}
    context: dict[str, Any] = {
        "alerts": alerts,
        "total": total,
        "filters": filters,
        "number": number,
        "pages": max(1, -(-total // size)),
        "link": lambda **changes: (
            "/console/alerts?"
            + urlencode({k: v for k, v in {**filters, "page": "1", **changes}.items() if v})
        ),
    }
    if query.get("fragment") == "live":
        return render(request, "_alert_rows.html", context)
    return render(request, "alerts.html", context)


@requires("acknowledge_alerts")
async def post_acknowledge(request: web.Request) -> web.StreamResponse:
    """Acknowledge one open alert, then back to where the form was."""
    raw = request.match_info["alert_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("alert id: expected a number", key="console_bad_alert")
    alert_id = int(raw)
    user = principal(request).session.user
    done = await request.config_dict[CONSOLE_STORAGE].acknowledge_alert(
        alert_id, user.username, datetime.now(UTC)
    )
    await audit(request, "alert_acknowledge", f"alert {alert_id}", "" if done else "not open")
    form = await request.post()
    back = str(form.get("back", "/console/alerts"))
    raise web.HTTPSeeOther(back if back.startswith("/console/") else "/console/alerts")
