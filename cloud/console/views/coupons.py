"""The coupons page: campaigns, redemptions per store over time, conflicts, issuing with QR."""

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from cloud.console.charts import sparkline
from cloud.console.coupons import MAX_ISSUE, qr_svg
from cloud.console.keys import CONSOLE_STORAGE, COUPONS
from cloud.console.render import render
from cloud.console.session import audit, requires
from cloud.errors import BadRequest

SERIES_DAYS = 7
SERIES_STORES = 20
CONFLICTS = 50


@requires("view")
async def get_coupons(request: web.Request) -> web.StreamResponse:
    """Campaigns and conflicts when coupon storage is wired in; redemptions from the event log."""
    return render(request, "coupons.html", await _context(request, issued=None, campaign=None))


@requires("issue_coupons")
async def post_issue(request: web.Request) -> web.StreamResponse:
    """Issue `count` coupons of a campaign and show them with their QR codes."""
    coupons = request.config_dict[COUPONS]
    if coupons is None:
        raise BadRequest("Coupon storage is not enabled on this cloud.", key="console_no_coupons")
    form = await request.post()
    campaign_id = _number(form.get("campaign_id"), "campaign", 1, 2**63 - 1)
    count = _number(form.get("count"), "count", 1, MAX_ISSUE)
    issued = await coupons.issue(campaign_id, count)
    await audit(request, "coupons_issue", f"campaign {campaign_id}", f"{len(issued)} coupons")
    shown = [{"coupon_id": c.coupon_id, "token": c.token, "qr": qr_svg(c.token)} for c in issued]
    return render(request, "coupons.html", await _context(request, shown, campaign_id))


async def _context(
    request: web.Request, issued: list[dict[str, Any]] | None, campaign: int | None
) -> dict[str, Any]:
    coupons = request.config_dict[COUPONS]
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=SERIES_DAYS)
    series = await request.config_dict[CONSOLE_STORAGE].kind_series(
        "coupon.redeemed", start, SERIES_STORES
    )
    hours = SERIES_DAYS * 24 + 1
    redemptions = []
    for s in series:
        by_hour = dict(s.points)
        daily = [
            sum(by_hour.get(start + timedelta(hours=h), 0) for h in range(d * 24, d * 24 + 24))
            for d in range(-(-hours // 24))
        ]
        label = f"{s.store_id}: {s.total} redemptions over {SERIES_DAYS} days"
        redemptions.append({"store_id": s.store_id, "total": s.total,
                            "spark": sparkline(daily, label)})  # fmt: skip
    return {
        "enabled": coupons is not None,
        "campaigns": await coupons.list_campaigns() if coupons else [],
        "conflicts": await coupons.list_conflicts(CONFLICTS) if coupons else [],
        "redemptions": redemptions,
        "series_days": SERIES_DAYS,
        "issued": issued,
        "issued_campaign": campaign,
        "max_issue": MAX_ISSUE,
    }


def _number(value: Any, name: str, low: int, high: int) -> int:
    text = value if isinstance(value, str) else ""
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise BadRequest(f"{name}: expected a number {low}..{high}", key=f"console_bad_{name}")
    return int(text)
