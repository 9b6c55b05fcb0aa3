"""Coupon admin API (bearer admin token): campaigns, keys, issuing, QR codes, stats, conflicts."""

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cloud.coupon_models import CampaignCreate, IssueRequest
from cloud.coupons import create_campaign, issue, new_key_pair, qr_png
from cloud.errors import BadRequest, NotFound
from cloud.keys import COUPON_STORAGE
from cloud.responses import iso, json_response
from cloud.storage.coupon_records import (
    CampaignRecord,
    CampaignStats,
    ConflictRecord,
    CouponKeyRecord,
)
from cloud.views._body import read_model
from cloud.views.admin import MAX_CURSOR, admin_only
from cloud.views.admin import _int as int_arg
from protocol.coupons import encode_public_key

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_U32 = 2**32 - 1


@admin_only
async def post_campaign(request: web.Request) -> web.Response:
    """201 the new campaign with its first public key."""
    body = await read_model(request, CampaignCreate)
    campaign = await create_campaign(request.app[COUPON_STORAGE], body)
    return json_response(_campaign(campaign), status=201)


@admin_only
async def get_campaigns(request: web.Request) -> web.Response:
    """200 `{"campaigns": [...]}`, oldest first."""
    campaigns = await request.app[COUPON_STORAGE].list_campaigns()
    return json_response({"campaigns": [_campaign(c) for c in campaigns]})


@admin_only
async def get_campaign(request: web.Request) -> web.Response:
    """200 one campaign with all its public keys; 404."""
    campaign_id = _campaign_id(request)
    campaign = await request.app[COUPON_STORAGE].get_campaign(campaign_id)
    if campaign is None:
        raise NotFound(f"unknown campaign {campaign_id}", key="unknown_campaign")
    return json_response(_campaign(campaign))


@admin_only
async def post_rotate_key(request: web.Request) -> web.Response:
    """201 the campaign's new active key; the old one keeps verifying what it signed."""
    campaign_id = _campaign_id(request)
    key = await request.app[COUPON_STORAGE].rotate_key(
        campaign_id, new_key_pair(), datetime.now(UTC)
    )
    if key is None:
        raise NotFound(f"unknown campaign {campaign_id}", key="unknown_campaign")
    return json_response(_key(key), status=201)


@admin_only
async def post_coupons(request: web.Request) -> web.Response:
    """201 `{"coupons": [{coupon_id, token, qr_png}]}`: signed tokens and where their QR is."""
    campaign_id = _campaign_id(request)
    body = await read_model(request, IssueRequest)
    issued = await issue(request.app[COUPON_STORAGE], campaign_id, body)
    coupons = [
        {
            "coupon_id": c.coupon_id,
            "token": c.token,
            "qr_png": str(request.app.router["coupon_qr"].url_for(coupon_id=str(c.coupon_id))),
            "valid_from": iso(c.valid_from),
            "valid_to": iso(c.valid_to),
        }
        for c in issued
    ]
    return json_response({"campaign_id": campaign_id, "coupons": coupons}, status=201)


@admin_only
async def get_coupon(request: web.Request) -> web.Response:
    """200 one coupon, its token and its fleet-wide holder (if any); 404."""
    record = await request.app[COUPON_STORAGE].get_coupon(_coupon_id(request))
    if record is None:
        raise NotFound("unknown coupon", key="unknown_coupon")
    coupon, hold = record.coupon, record.hold
    return json_response(
        {
            "coupon_id": coupon.coupon_id,
            "campaign_id": coupon.campaign_id,
            "key_id": coupon.key_id,
            "value_minor": coupon.value_minor,
            "single_use": coupon.single_use,
            "stores": coupon.stores,
            "valid_from": iso(coupon.valid_from),
            "valid_to": iso(coupon.valid_to),
            "token": coupon.token,
            "issued_at": iso(record.issued_at),
            "held_by": None
            if hold is None
            else {
                "store_id": hold.store_id,
                "agent_id": hold.agent_id,
                "redemption_id": hold.redemption_id,
                "held_at": iso(hold.held_at),
                "via": hold.via,
            },
        }
    )


@admin_only
async def get_coupon_qr(request: web.Request) -> web.Response:
    """200 image/png: the coupon's token as a QR code; 404."""
    record = await request.app[COUPON_STORAGE].get_coupon(_coupon_id(request))
    if record is None:
        raise NotFound("unknown coupon", key="unknown_coupon")
    return web.Response(body=qr_png(record.coupon.token), content_type="image/png")


@admin_only
async def get_stats(request: web.Request) -> web.Response:
    """200 a campaign's totals, each the sum of its per-store parts; 404."""
    campaign_id = _campaign_id(request)
    stats = await request.app[COUPON_STORAGE].campaign_stats(campaign_id)
    if stats is None:
        raise NotFound(f"unknown campaign {campaign_id}", key="unknown_campaign")
    return json_response(_stats(stats))


@admin_only
async def get_conflicts(request: web.Request) -> web.Response:
    """200 `{"conflicts": [...], "next_after": cursor | None}`, each naming every store."""
    query = request.rel_url.query
    limit = int_arg(query.get("limit"), "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    rows = await request.app[COUPON_STORAGE].list_conflicts(
        int_arg(query.get("campaign_id"), "campaign_id", 0, _U32),
        int_arg(query.get("after"), "after", 0, MAX_CURSOR),
        limit + 1,
    )
    page = rows[:limit]
    return json_response(
        {
            "conflicts": [_conflict(c) for c in page],
            "next_after": page[-1].cursor if len(rows) > limit else None,
        }
    )


def _campaign(c: CampaignRecord) -> dict[str, Any]:
    return {
        "campaign_id": c.campaign_id,
        "name": c.name,
        "currency": c.currency,
        "max_offline_value": c.max_offline_value,
        "valid_from": iso(c.valid_from),
        "valid_to": iso(c.valid_to),
        "stores": c.stores,
        "created_at": iso(c.created_at),
        "keys": [_key(k) for k in c.keys],
    }


def _key(k: CouponKeyRecord) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "public_key": encode_public_key(k.public_key),
        "active": k.active,
        "created_at": iso(k.created_at),
        "retired_at": iso(k.retired_at),
    }


def _stats(s: CampaignStats) -> dict[str, Any]:
    return {
        "campaign_id": s.campaign_id,
        "issued": s.issued,
        "reserved_online": s.reserved_online,
        "redeemed_coupons": s.redeemed_coupons,
        "redemptions": s.redemptions,
        "offline_redemptions": s.offline_redemptions,
        "value_redeemed": s.value_redeemed,
        "conflicts": s.conflicts,
        "rejected": s.rejected,
        "stores": [
            {
                "store_id": p.store_id,
                "redemptions": p.redemptions,
                "value_redeemed": p.value_redeemed,
                "offline_redemptions": p.offline_redemptions,
                "rejected": p.rejected,
            }
            for p in s.stores
        ],
    }


def _conflict(c: ConflictRecord) -> dict[str, Any]:
    return {
        "cursor": c.cursor,
        "coupon_id": c.coupon_id,
        "campaign_id": c.campaign_id,
        "stores": c.stores,
        "detected_at": iso(c.detected_at),
        "updated_at": iso(c.updated_at),
        "redemptions": [
            {
                "redemption_id": r.redemption_id,
                "store_id": r.store_id,
                "agent_id": r.agent_id,
                "mode": r.mode,
                "value_minor": r.value_minor,
                "staff_id": r.staff_id,
                "occurred_at": iso(r.occurred_at),
                "received_at": iso(r.received_at),
            }
            for r in c.redemptions
        ],
    }


def _campaign_id(request: web.Request) -> int:
    value = int_arg(request.match_info["campaign_id"], "campaign_id", 1, _U32)
    assert value is not None
    return value


def _coupon_id(request: web.Request) -> int:
    value = int_arg(request.match_info["coupon_id"], "coupon_id", 1, MAX_CURSOR)
    if value is None:  # pragma: no cover - the route's pattern guarantees digits
        raise BadRequest("coupon_id: missing", key="bad_coupon_id")
    return value
