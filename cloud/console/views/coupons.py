"""The coupons page: campaigns with stats, redemptions per store over time, conflicts, issuing."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from cloud.console.charts import DAY, HOUR, sparkline, stacked_bars
from cloud.console.coupons import MAX_ISSUE, CampaignSummary, qr_svg
from cloud.console.keys import CONSOLE_STORAGE, COUPONS
from cloud.console.render import render
from cloud.console.session import audit, requires
from cloud.coupon_models import IssueRequest
from cloud.errors import BadRequest, NotFound
from cloud.keys import COUNTERS
from protocol.coupons import format_value, parse_value

SERIES_STORES = 20  # stores in the redemptions table, busiest first
CHART_STORES = 6  # of those, stacked in the chart (one colour each, busiest at the bottom)
CONFLICTS = 50
# ?range= of the redemptions chart: how many bars of which width.
RANGES: dict[str, tuple[int, timedelta]] = {"24h": (24, HOUR), "7d": (7, DAY)}
DEFAULT_RANGE = "24h"
MAX_STORES_TEXT = 1000  # the store-scope field, before it is split and validated


@requires("view")
async def get_coupons(request: web.Request) -> web.StreamResponse:
    """Campaigns, conflicts and redemptions; `?range=24h|7d` picks the chart's span."""
    chosen = request.rel_url.query.get("range", DEFAULT_RANGE)
    if chosen not in RANGES:
        raise BadRequest(f"range: expected one of {', '.join(RANGES)}", key="console_bad_range")
    return render(request, "coupons.html", await _context(request, chosen))


@requires("issue_coupons")
async def post_issue(request: web.Request) -> web.StreamResponse:
    """Issue coupons of a campaign and show them with their QR codes; the form again if refused."""
    form = await request.post()
    coupons = request.config_dict[COUPONS]
    try:
        campaign, ask = _issue_request(form, await coupons.list_campaigns())
        issued = await coupons.issue(campaign.campaign_id, ask)
    except BadRequest as exc:
        request.config_dict[COUNTERS].bad_requests[exc.key] += 1
        context = await _context(request, DEFAULT_RANGE)
        context.update(issue_error=exc.reason, form=_sticky(form))
        return render(request, "coupons.html", context, status=400)
    value = format_value(ask.value, campaign.currency)
    scope = f", stores {', '.join(ask.stores)}" if ask.stores else ""
    await audit(request, "coupons_issue", f"campaign {campaign.campaign_id}",
                f"{len(issued)} coupons of {value}{scope}")  # fmt: skip
    context = await _context(request, DEFAULT_RANGE)  # the totals now count them
    context.update(
        issued=[{"coupon": c, "qr": qr_svg(c.token)} for c in issued],
        issued_campaign=campaign,
    )
    return render(request, "coupons.html", context)


def _issue_request(
    form: MultiDictProxy[Any], campaigns: list[CampaignSummary]
) -> tuple[CampaignSummary, IssueRequest]:
    """The campaign and the checked request a submitted issue form asks for."""
    campaign_id = _number(form.get("campaign_id"), "campaign", 1, 2**32 - 1)
    campaign = next((c for c in campaigns if c.campaign_id == campaign_id), None)
    if campaign is None:
        raise NotFound(f"There is no campaign {campaign_id} (the page lists the newest ones).",
                       key="unknown_campaign")  # fmt: skip
    if campaign.state(datetime.now(UTC)) == "ended":
        raise BadRequest(f"campaign: {campaign.name} has ended; its coupons could no longer be"
                         " redeemed", key="console_campaign_ended")  # fmt: skip
    count = _number(form.get("count"), "count", 1, MAX_ISSUE)
    try:
        value = parse_value(_text(form.get("value")), campaign.currency)
    except ValueError as exc:
        raise BadRequest(f"value: {exc}", key="console_bad_value") from exc
    stores_text = _text(form.get("stores"))[:MAX_STORES_TEXT]
    stores = stores_text.replace(",", " ").split() or None
    try:
        ask = IssueRequest(count=count, value=value, stores=stores,
                           single_use=form.get("single_use") == "1")  # fmt: skip
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}", key="console_bad_issue") from exc
    return campaign, ask


async def _context(request: web.Request, chosen: str) -> dict[str, Any]:
    coupons = request.config_dict[COUPONS]
    now = datetime.now(UTC)
    campaigns = await coupons.list_campaigns()
    return {
        "campaigns": campaigns,
        "issuable": [c for c in campaigns if c.state(now) != "ended"],
        "names": {c.campaign_id: c.name for c in campaigns},
        "conflicts": await coupons.recent_conflicts(CONFLICTS),
        "conflicts_total": sum(c.conflicts for c in campaigns),
        "redemptions": await _redemptions(request, now, chosen),
        "ranges": list(RANGES),
        "range": chosen,
        "issued": None,
        "issued_campaign": None,
        "issue_error": "",
        "form": {"count": "1", "value": "", "stores": "", "single_use": "1"},
        "max_issue": MAX_ISSUE,
        "request_origin": str(request.url.origin()),
    }


async def _redemptions(request: web.Request, now: datetime, chosen: str) -> dict[str, Any]:
    """The busiest stores' synced `coupon.redeemed` events, bucketed for the chart and table."""
    slots, step = RANGES[chosen]
    floor = now.replace(minute=0, second=0, microsecond=0)
    if step >= DAY:
        floor = floor.replace(hour=0)
    start = floor - step * (slots - 1)
    series = await request.config_dict[CONSOLE_STORAGE].kind_series(
        "coupon.redeemed", start, SERIES_STORES
    )
    span = "the last 24 hours" if step < DAY else f"the last {slots} days"
    rows: list[dict[str, Any]] = []
    stacked: list[tuple[str, dict[datetime, int]]] = []
    for i, s in enumerate(series):
        buckets: dict[datetime, int] = {}
        for hour, count in s.points:
            slot = start + step * ((hour - start) // step)
            buckets[slot] = buckets.get(slot, 0) + count
        css = f"s{i}" if i < CHART_STORES else ""
        if css:
            stacked.append((css, buckets))
        counts = [buckets.get(start + step * k, 0) for k in range(slots)]
        label = f"{s.store_id}: {s.total} redemptions over {span}"
        rows.append({"store_id": s.store_id, "total": s.total, "css": css,
                     "spark": sparkline(counts, label)})  # fmt: skip
    total = sum(s.total for s in series)
    label = f"Redemptions per store over {span}, busiest {len(stacked)} stores: {total} in all"
    return {
        "rows": rows,
        "chart": stacked_bars(stacked, start, slots, label, step) if rows else None,
        "span": span,
        "charted": len(stacked),
    }


def _number(value: Any, name: str, low: int, high: int) -> int:
    text = _text(value)
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise BadRequest(f"{name}: expected a number {low}..{high}", key=f"console_bad_{name}")
    return int(text)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _sticky(form: Mapping[str, Any]) -> dict[str, str]:
    """What the admin typed, to fill the form again (never more than the fields it has)."""
    fields = ("campaign_id", "count", "value", "stores", "single_use")
    return {name: _text(form.get(name))[:MAX_STORES_TEXT] for name in fields}
