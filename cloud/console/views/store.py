"""The store page: agent, devices and their history, live tail, scan diagnostics, charts."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from cloud.config_status import StoreConfigStatus, store_config_status
from cloud.console.charts import hourly_bars
from cloud.console.describe import tail_item
from cloud.console.keys import CONSOLE_STORAGE
from cloud.console.render import render
from cloud.console.session import requires
from cloud.console.views import params
from cloud.errors import NotFound
from cloud.keys import COUPON_STORAGE, SETTINGS_STORAGE, STORAGE
from cloud.storage.base import StoreDetail
from cloud.storage.console import AlertQuery, StatusChange
from protocol.settings import ConfigRefusal

CHART_HOURS = 24
TAIL_ROWS = 30
HISTORY_ROWS = 100
EXAMPLES = 10
COUPON_KINDS = ("coupon.redeemed", "coupon.rejected", "mirror.coupon_claimed")
FRAGMENTS = {
    "devices": "_store_devices.html",
    "alerts": "_store_alerts.html",
    "config": "_store_config.html",
}


@requires("view")
async def get_store(request: web.Request) -> web.StreamResponse:
    """One store in full; `?fragment=devices|alerts` renders only that live part."""
    store_id = params.store_id(request.match_info["store_id"])
    console = request.config_dict[CONSOLE_STORAGE]
    detail = await request.config_dict[STORAGE].get_store(store_id)
    if detail is None:
        raise NotFound(f"There is no store {store_id!r}. Check the id on the fleet page.")
    fragment = request.rel_url.query.get("fragment")
    if fragment is not None and fragment not in FRAGMENTS:
        raise web.HTTPBadRequest(reason="unknown fragment")
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        "store_id": store_id,
        "detail": detail,
        "row": await console.fleet_row(store_id),
        "devices": await console.store_devices(store_id),
        "alerts": (await console.list_alerts(AlertQuery(store_id=store_id, limit=20)))[0],
    }
    if fragment in (None, "config"):
        config = await store_config_status(
            request.config_dict[SETTINGS_STORAGE], request.config_dict[COUPON_STORAGE],
            store_id, now,
        )  # fmt: skip
        context.update(config=config, config_rows=config_rows(detail, config))
    if fragment is not None:
        return render(request, FRAGMENTS[fragment], context)
    history = await console.status_history(store_id, HISTORY_ROWS)
    tail = await console.latest_events(store_id, None, TAIL_ROWS)
    coupon_events = await console.latest_events(store_id, COUPON_KINDS, 10)
    context.update(
        history=_by_device(history),
        scan_stats=await console.scan_stats(store_id, now - timedelta(hours=CHART_HOURS)),
        examples=await console.scan_examples(store_id, EXAMPLES),
        tail=[tail_item(e.cursor, e.body) for e in tail],
        tail_after=tail[0].cursor if tail else 0,
        coupon_events=[tail_item(e.cursor, e.body) for e in coupon_events],
        resolved=(await console.list_alerts(AlertQuery("resolved", store_id=store_id, limit=5)))[0],
        chart=await _chart(request, store_id, now),
    )
    return render(request, "store.html", context)


async def _chart(request: web.Request, store_id: str, now: datetime) -> Any:
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=CHART_HOURS - 1)
    counts = await request.config_dict[CONSOLE_STORAGE].hourly_counts(store_id, start)
    by_kind: dict[str, dict[datetime, int]] = defaultdict(dict)
    for c in counts:
        by_kind[c.kind][c.hour] = c.count
    events, scans, unrecognised = by_kind["events"], by_kind["scan"], by_kind["unrecognised"]
    recognised = {h: n - unrecognised.get(h, 0) for h, n in scans.items()}
    other = {h: n - scans.get(h, 0) for h, n in events.items()}
    series = [("recognised", recognised), ("unrecognised", unrecognised), ("other", other)]
    total = sum(events.values())
    label = f"Events per hour over the last {CHART_HOURS} hours: {total} in all"
    return {"svg": hourly_bars(series, start, CHART_HOURS, label), "total": total}


@dataclass(frozen=True, slots=True)
class ConfigRow:
    """One live agent's config beside the store's desired one, as the page shows it."""

    agent_id: str
    applied_version: int | None
    applied_hash: str | None
    state: str  # in_sync | refused | pending | not_reported
    refusal: ConfigRefusal | None
    refusing_now: bool  # the refusal is what its latest heartbeat says, not history


def config_rows(detail: StoreDetail, config: StoreConfigStatus) -> dict[str, ConfigRow]:
    """Per live agent: applied vs desired, judged; the heartbeat says whether it refuses now."""
    reports = {a.agent_id: a for a in config.agents}
    rows = {}
    for agent in detail.agents:
        if agent.revoked_at is not None:
            continue
        body = agent.heartbeat.body if agent.heartbeat else {}
        report = reports.get(agent.agent_id)
        refusing_now = body.get("config_error") is not None
        if report is None:
            state = "refused" if refusing_now else "not_reported"
        elif report.in_sync:
            state = "in_sync"
        elif report.refusing or refusing_now:
            state = "refused"
        else:
            state = "pending"
        rows[agent.agent_id] = ConfigRow(
            agent.agent_id,
            report.applied_version if report else None,
            report.applied_hash if report else None,
            state,
            report.last_refusal if report else None,
            refusing_now,
        )
    return rows


def _by_device(history: list[StatusChange]) -> dict[str, list[StatusChange]]:
    grouped: dict[str, list[StatusChange]] = defaultdict(list)
    for change in history:
        grouped[change.device_id].append(change)
    return dict(sorted(grouped.items()))
