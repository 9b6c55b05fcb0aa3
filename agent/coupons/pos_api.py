"""The POS coupon endpoint: the store's till validates and redeems coupons over the store LAN.

Bound to the `[pos]` host (a loopback or private address, agent/config.py), open only to
loopback and `allowed_networks`, and every request needs `Authorization: Bearer <token>`.
Each refusal is a JSON `{"error": …}` and a counter; nothing a client sends can crash the
agent or redeem without a recorded event (docs/COUPONS.md "POS API").
"""

import contextlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import Field, ValidationError

from agent.config import PosSection
from agent.coupons.flow import CouponFlow, Outcome
from protocol.base import Frozen, Id, Short
from protocol.coupons import MAX_TOKEN_CHARS

# A redeem request is a token (≤ 199 chars) and two short fields: 4 KiB is generous.
MAX_BODY_BYTES = 4096
POS_DEVICE_ID = "pos"  # the device id POS redemptions are recorded under
# HTTP status per rejection reason: 409 when the coupon's state forbids it, 422 otherwise.
_CONFLICT_REASONS = frozenset(
    {"already_redeemed_here", "already_redeemed_elsewhere", "over_offline_limit"}
)

FLOW = web.AppKey("flow", CouponFlow)
SETTINGS = web.AppKey("settings", PosSection)
COUNTERS: web.AppKey[Counter[str]] = web.AppKey("counters")


class RedeemBody(Frozen):
    """POST /v1/coupons/redeem and /validate: the token as scanned at the till."""

    # Longer than any token on purpose: an oversized token gets its precise reason.
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS * 4)]
    pos_ref: Short | None = None  # the till's own receipt or basket reference
    staff_id: Id | None = None  # the shopping guide to credit, if the till knows


def create_pos_app(settings: PosSection, flow: CouponFlow) -> web.Application:
    """The POS API; `flow` records every redemption it decides."""
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[FLOW] = flow
    app[COUNTERS] = Counter()
    app.router.add_post("/v1/coupons/validate", post_validate)
    app.router.add_post("/v1/coupons/redeem", post_redeem)
    app.router.add_get("/healthz", get_healthz)
    return app


async def post_validate(request: web.Request) -> web.Response:
    """200 `{"valid": bool, "reason", …}`: what a redemption would decide offline, nothing kept."""
    body = await _body(request)
    outcome = await request.app[FLOW].validate(body.token, POS_DEVICE_ID)
    valid = outcome.status == "valid" and outcome.reason is None
    return _json({"valid": valid, **_describe(outcome)})


async def post_redeem(request: web.Request) -> web.Response:
    """200 redeemed; 409/422 rejected with the reason. Either way the event is durable first."""
    body = await _body(request)
    outcome = await request.app[FLOW].present(
        body.token, POS_DEVICE_ID, "pos", staff_id=body.staff_id, pos_ref=body.pos_ref
    )
    if outcome.status == "redeemed":
        return _json(_describe(outcome))
    status = 409 if outcome.reason in _CONFLICT_REASONS else 422
    return _json(_describe(outcome), status)


async def get_healthz(request: web.Request) -> web.Response:
    """200 `{"status": "ok"}` with the request counters."""
    counters: Counter[str] = request.app[COUNTERS]
    return _json({"status": "ok", "counters": dict(counters)})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Peer address, then bearer token, then the handler; every refusal counted by reason."""
    counters = request.app[COUNTERS]
    settings = request.app[SETTINGS]
    if not _peer_allowed(request.remote, settings.allowed_networks):
        counters["refused_peer"] += 1
        return _error(403, "this address may not use the POS API")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), settings.token.encode()
    ):
        counters["refused_token"] += 1
        return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    try:
        response = await handler(request)
    except _BadRequest as exc:
        counters[f"bad_{exc.key}"] += 1
        return _error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        counters[f"http_{exc.status}"] += 1
        return _error(exc.status, exc.reason)
    counters[f"ok_{request.path.rsplit('/', 1)[-1]}"] += 1
    return response


@contextlib.asynccontextmanager
async def serve_pos(settings: PosSection, flow: CouponFlow) -> AsyncIterator[web.AppRunner]:
    """Serve the POS API on `settings.host:port` while the context is open."""
    runner = web.AppRunner(create_pos_app(settings, flow), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        yield runner
    finally:
        await runner.cleanup()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, key: str) -> None:
        super().__init__(message)
        self.status = status
        self.key = key


async def _body(request: web.Request) -> RedeemBody:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _BadRequest(413, f"body exceeds {MAX_BODY_BYTES} bytes", "too_large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _BadRequest(413, f"body exceeds {MAX_BODY_BYTES} bytes", "too_large") from exc
    try:
        return RedeemBody.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _BadRequest(400, f"{where}: {first['msg']}", "body") from exc


def _peer_allowed(remote: str | None, networks: list[str]) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _describe(outcome: Outcome) -> dict[str, Any]:
    coupon = outcome.coupon
    claims = coupon.claims if coupon is not None else None
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "redemption_id": outcome.redemption_id,
        "reservation": outcome.mode,
        "other_store_id": outcome.other_store_id,
        "staff_id": outcome.staff_id,
        "coupon": None
        if claims is None or coupon is None
        else {
            "code": coupon.code,
            "campaign_id": claims.campaign_id,
            "coupon_id": claims.coupon_id,
            "value_minor": claims.value_minor,
            "currency": claims.currency,
            "value": coupon.value_text,
            "single_use": claims.single_use,
            "valid_to": coupon.valid_to_at.isoformat().replace("+00:00", "Z"),
        },
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = _json({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response
