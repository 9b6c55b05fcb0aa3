"""Agent-facing coupon API: GET /v1/config (business config, ETag) and POST /v1/coupons/reserve."""

from datetime import UTC, datetime

from aiohttp import web

from cloud.coupons import business_config
from cloud.errors import NotFound
from cloud.keys import AGENT_AUTH, COUNTERS, COUPON_STORAGE, SETTINGS_STORAGE
from cloud.responses import json_response
from cloud.settings import effective_settings
from cloud.views._body import read_model
from protocol.coupon_events import ReserveRequest, ReserveResponse


async def get_config(request: web.Request) -> web.Response:
    """200 `BusinessConfig` with a strong ETag; 304 when `If-None-Match` names it."""
    agent = await request.app[AGENT_AUTH].async_authenticate(request)
    settings = await effective_settings(request.app[SETTINGS_STORAGE], agent.store_id)
    config = await business_config(
        request.app[COUPON_STORAGE], agent.store_id, datetime.now(UTC), settings
    )
    etag = f'"{config.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(request.headers.get("If-None-Match"), etag):
        request.app[COUNTERS].events["config_not_modified"] += 1
        return web.Response(status=304, headers=headers)
    request.app[COUNTERS].events["config_sent"] += 1
    return json_response(config.model_dump(mode="json"), headers=headers)


async def post_reserve(request: web.Request) -> web.Response:
    """200 reserved / not_required; 409 already_redeemed with the holder; 404 unknown coupon."""
    agent = await request.app[AGENT_AUTH].async_authenticate(request)
    body = await read_model(request, ReserveRequest)
    outcome = await request.app[COUPON_STORAGE].reserve(
        body.coupon_id, body.campaign_id, body.redemption_id, agent, datetime.now(UTC)
    )
    request.app[COUNTERS].events[f"reserve_{outcome.status}"] += 1
    if outcome.status == "unknown":
        raise NotFound(f"coupon {body.coupon_id} was never issued", key="unknown_coupon")
    hold = outcome.hold
    answer = ReserveResponse(
        status=outcome.status,
        coupon_id=body.coupon_id,
        store_id=hold.store_id if hold else None,
        reserved_at=hold.held_at if hold else None,
    )
    status = 409 if outcome.status == "already_redeemed" else 200
    return json_response(answer.model_dump(mode="json"), status=status)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: `*` or any listed tag, compared weakly (a W/ prefix is ignored)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
