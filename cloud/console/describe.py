"""One line of text per event for the live tail, by kind (a table, not an if-chain)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from protocol.coupons import format_value

MAX_TEXT = 160


def _scan(p: dict[str, Any]) -> str:
    what = p.get("classification", "unrecognised")
    text = f"{what}: {p.get('text', '')!s}"
    if p.get("symbology"):
        text += f" ({p['symbology']})"
    if what == "unrecognised" and p.get("reason"):
        text += f" — {p['reason']}"
    return text


def _status(p: dict[str, Any]) -> str:
    text = f"{p.get('state', '?')} · {p.get('condition', '')}"
    return text + (f" — {p['detail']}" if p.get("detail") else "")


def _redeemed(p: dict[str, Any]) -> str:
    value = format_value(int(p["value_minor"]), str(p["currency"]))
    text = f"coupon_id {p['coupon_id']} · campaign {p['campaign_id']} · {value}"
    text += f" · {p['reservation']}"
    return text + (f" · staff {p['staff_id']}" if p.get("staff_id") else "")


def _rejected(p: dict[str, Any]) -> str:
    text = str(p.get("reason", "?")).replace("_", " ")
    if p.get("coupon_id") is not None:
        text += f" · coupon_id {p['coupon_id']}"
    if p.get("other_store_id"):
        text += f" (held by {p['other_store_id']})"
    return text


def _keys(*names: str) -> Callable[[dict[str, Any]], str]:
    def describe(p: dict[str, Any]) -> str:
        return " · ".join(f"{n} {p[n]}" for n in names if p.get(n) not in (None, ""))

    return describe


DESCRIBE: dict[str, Callable[[dict[str, Any]], str]] = {
    "scan": _scan,
    "device.status": _status,
    "print.completed": _keys("job_id", "template"),
    "print.failed": _keys("job_id", "template", "reason"),
    "mirror.session": _keys("session_id", "phase", "staff_id"),
    "mirror.tryon": _keys("session_id", "item_code"),
    "mirror.coupon_claimed": _keys("session_id", "campaign_hint"),
    "coupon.redeemed": _redeemed,
    "coupon.rejected": _rejected,
}


def _nothing(payload: dict[str, Any]) -> str:
    return ""


def tail_item(cursor: int, body: str) -> dict[str, Any]:
    """The live-tail form of a stored event: cursor, time, device, kind and a one-line text."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"cursor": cursor, "occurred_at": None, "device_id": "", "kind": "?", "text": ""}
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    kind = str(event.get("kind", "?"))
    describe = DESCRIBE.get(kind, _nothing)
    try:
        text = describe(payload)
    except (KeyError, TypeError, ValueError):
        text = ""
    return {
        "cursor": cursor,
        "occurred_at": _utc(event.get("occurred_at")),
        "device_id": str(event.get("device_id", "")),
        "kind": kind,
        "text": text[:MAX_TEXT],
    }


def _utc(value: Any) -> str | None:
    # The stored form is whatever ISO text the agent sent; normalise to the `Z` form.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
