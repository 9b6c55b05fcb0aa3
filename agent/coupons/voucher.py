"""The redemption voucher printed on the till: the printer's `coupon` template, filled in."""

from datetime import UTC, datetime
from typing import Any

from protocol.coupons import VerifiedCoupon
from protocol.settings import ReceiptSettings

# What the voucher's QR holds: the redemption, not the coupon, so rescanning a voucher is an
# unrecognised scan rather than a second attempt at the coupon.
VOUCHER_QR_PREFIX = "SE-REDEEMED:"
_MODE_TEXT = {
    "reserved": "confirmed online",
    "offline": "offline, reconciled later",
    "not_required": "multi-use",
}


def voucher_fields(
    coupon: VerifiedCoupon,
    redemption_id: str,
    mode: str | None,
    campaign_name: str,
    store_id: str,
    staff_id: str | None,
    now: datetime | None = None,
    receipt: ReceiptSettings | None = None,
) -> dict[str, Any]:
    """`CouponData` fields (agent/devices/printer/templates.py) for one redemption.

    `receipt` (remote config) names the store and adds footer lines under the terms.
    """
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    terms = [f"Redeemed {when}", f"({_MODE_TEXT.get(mode or '', mode or '')})"]
    if staff_id:
        terms.append(f"Served by {staff_id}")
    terms.append(f"Ref {redemption_id}")
    if receipt is not None:
        terms.extend(receipt.voucher_footer)
    return {
        "title": (campaign_name or "Coupon")[:64],
        "title_zh": "优惠券已使用",
        "value": coupon.value_text[:32],
        "token": VOUCHER_QR_PREFIX + redemption_id,
        "code": coupon.code[:32],
        "terms": "\n".join(terms),
        "store_name": (receipt.store_name if receipt else None) or store_id,
    }
