"""The fleet page: every store with its lamp, backlog, faults and events; totals on top."""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from cloud.console.keys import CONSOLE_SETTINGS, CONSOLE_STORAGE
from cloud.console.render import render
from cloud.console.session import requires
from cloud.console.views import params
from cloud.storage.console import (
    FLEET_SORTS,
    AlertQuery,
    FleetQuery,
    FleetThresholds,
    StatusFilter,
)

STATUSES: tuple[StatusFilter, ...] = ("online", "stale", "offline", "no_agent")
ALERTS_ON_FLEET = 8
# Sorts whose natural reading is "worst first".
DESCENDING_BY_DEFAULT = frozenset({"backlog", "faults", "events_today", "alerts", "last_event"})


@requires("view")
async def get_fleet(request: web.Request) -> web.StreamResponse:
    """The fleet list; `?fragment=live` renders only the part live updates replace."""
    settings = request.config_dict[CONSOLE_SETTINGS]
    storage = request.config_dict[CONSOLE_STORAGE]
    query = request.rel_url.query
    now = datetime.now(UTC)
    sort = params.choice(query, "sort", FLEET_SORTS, "store") or "store"
    direction = params.choice(query, "dir", ("asc", "desc"), None)
    descending = direction == "desc" if direction else sort in DESCENDING_BY_DEFAULT
    number = params.page(query)
    size = settings.page_size
    fleet_query = FleetQuery(
        thresholds=FleetThresholds(now, settings.stale_after_s, settings.offline_after_s),
        search=params.search(query),
        status=params.choice(query, "status", STATUSES, None),
        faults=params.flag(query, "faults"),
        backlog=params.flag(query, "backlog"),
        alerts=params.flag(query, "alerts"),
        sort=sort,
        descending=descending,
        offset=(number - 1) * size,
        limit=size,
    )
    page = await storage.fleet_page(fleet_query)
    pages = max(1, -(-page.matching // size))
    context: dict[str, Any] = {
        "page": page,
        "q": fleet_query,
        "number": number,
        "pages": pages,
        "link": _linker(fleet_query, number),
        "filtered": fleet_query.search or fleet_query.status or fleet_query.faults
        or fleet_query.backlog or fleet_query.alerts,
    }  # fmt: skip
    here = {k: v for k, v in query.items() if k != "fragment"}
    context["live_src"] = "/console/?" + urlencode({**here, "fragment": "live"})
    if query.get("fragment") == "live":
        return render(request, "_fleet_live.html", context)
    alerts, active = await storage.list_alerts(AlertQuery(limit=ALERTS_ON_FLEET))
    context.update(alerts=alerts, active_alerts=active)
    return render(request, "fleet.html", context)


def _linker(query: FleetQuery, number: int) -> Any:
    """`link(**changes)`: this page's URL with some parameters changed (page reset to 1)."""
    current = {
        "q": query.search,
        "status": query.status or "",
        "faults": "1" if query.faults else "",
        "backlog": "1" if query.backlog else "",
        "alerts": "1" if query.alerts else "",
        "sort": "" if query.sort == "store" else query.sort,
        "dir": "desc" if query.descending else "asc",
        "page": str(number),
    }

    def link(**changes: Any) -> str:
        merged = {**current, "page": "1", **{k: str(v) for k, v in changes.items()}}
        if "sort" in changes and "dir" not in changes:
            merged["dir"] = "desc" if changes["sort"] in DESCENDING_BY_DEFAULT else "asc"
        kept = {k: v for k, v in merged.items() if v and not (k == "page" and v == "1")}
        return "/console/?" + urlencode(kept)

    return link
