"""What the Coupons page needs from coupon storage, as a small interface of its own.

The coupon storage (campaigns, coupons, reservations, conflicts) is built elsewhere; the
console reads it only through `CouponSource`, so wiring it is one adapter. Without one the
page says how to enable it and still shows redemptions counted from the event log.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import segno

# A QR for a phone screen or a printed voucher: error correction M survives a cracked screen
# (ISO/IEC 18004 §6.5.1, ~15 % of codewords) and the 4-module quiet zone is the minimum (§6.3.8).
QR_ERROR = "m"
QR_BORDER = 4
QR_SCALE = 4
MAX_ISSUE = 100  # coupons per click: one page of QR codes


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """One campaign as the page lists it."""

    campaign_id: int
    name: str
    valid_from: datetime
    valid_to: datetime
    issued: int
    redeemed: int
    conflicts: int


@dataclass(frozen=True, slots=True)
class CouponConflict:
    """A single-use coupon redeemed in more than one place while offline."""

    coupon_id: int
    campaign_id: int
    detected_at: datetime
    stores: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A freshly issued coupon; `token` is what its QR code carries."""

    coupon_id: int
    token: str


class CouponSource(Protocol):
    """The coupon storage as the console uses it."""

    async def list_campaigns(self) -> list[CampaignSummary]:
        """Every campaign, newest first."""

    async def list_conflicts(self, limit: int) -> list[CouponConflict]:
        """The latest conflicts, newest first."""

    async def issue(self, campaign_id: int, count: int) -> list[IssuedCoupon]:
        """Sign and store `count` coupons; NotFound for an unknown campaign."""

    async def config_version(self, store_id: str) -> str | None:
        """The version of the business config the cloud publishes for this store, if any."""


def qr_svg(token: str) -> str:
    """An inline SVG QR code of `token` (no XML declaration, safe to embed in HTML)."""
    code = segno.make(token, error=QR_ERROR, micro=False)
    svg: str = code.svg_inline(scale=QR_SCALE, border=QR_BORDER, title=f"coupon {token[:16]}")
    return svg
