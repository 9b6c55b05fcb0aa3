"""What the Coupons page needs from coupon storage, as a small interface of its own.

The console reads campaigns, conflicts and issues coupons only through `CouponSource`;
`cloud.console.coupon_adapter.StorageCoupons` is the one over the cloud's `CouponStorage`.
Redemptions over time come from the console's own hourly roll-up of the event log.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import segno

from cloud.coupon_models import IssueRequest

# A QR for a phone screen or a printed voucher: error correction M survives a cracked screen
# (ISO/IEC 18004 §6.5.1, ~15 % of codewords) and the 4-module quiet zone is the minimum (§6.3.8).
QR_ERROR = "m"
QR_BORDER = 4
QR_SCALE = 4
MAX_ISSUE = 100  # coupons per click: one page of QR codes


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """One campaign and its totals as the page lists it; values in the currency's minor units."""

    campaign_id: int
    name: str
    currency: str
    max_offline_value: int
    valid_from: datetime
    valid_to: datetime
    stores: int | None  # stores in its scope; None: every store
    issued: int
    redeemed: int  # distinct coupons redeemed
    redemptions: int  # redemption records synced, conflicting ones included
    value_redeemed: int
    offline_redemptions: int
    reserved_online: int
    conflicts: int
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    top_stores: tuple[tuple[str, int], ...] = ()  # (store, redemptions), busiest first

    def state(self, now: datetime) -> str:
        """`upcoming`, `running` or `ended`: whether coupons can be issued and redeemed now."""
        if now < self.valid_from:
            return "upcoming"
        return "running" if now < self.valid_to else "ended"


@dataclass(frozen=True, slots=True)
class ConflictRedemption:
    """One of the redemptions of a conflicting coupon: where, when and how."""

    store_id: str
    agent_id: str
    mode: str  # online | offline
    occurred_at: datetime
    received_at: datetime
    staff_id: str | None


@dataclass(frozen=True, slots=True)
class CouponConflict:
    """A single-use coupon redeemed in more than one place while offline."""

    coupon_id: int
    campaign_id: int
    detected_at: datetime
    redemptions: tuple[ConflictRedemption, ...]

    @property
    def stores(self) -> list[str]:
        """Every store that redeemed it, sorted."""
        return sorted({r.store_id for r in self.redemptions})


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A freshly issued coupon; `token` is what its QR code carries."""

    coupon_id: int
    token: str
    value_minor: int
    single_use: bool
    valid_to: datetime
    stores: tuple[str, ...] | None


class CouponSource(Protocol):
    """The coupon storage as the console uses it."""

    async def list_campaigns(self) -> list[CampaignSummary]:
        """Every campaign with its totals, newest first."""

    async def recent_conflicts(self, limit: int) -> list[CouponConflict]:
        """The latest conflicts, newest first."""

    async def issue(self, campaign_id: int, request: IssueRequest) -> list[IssuedCoupon]:
        """Sign and store coupons; NotFound for an unknown campaign, BadRequest for a bad ask."""


def qr_svg(token: str) -> str:
    """An inline SVG QR code of `token` (no XML declaration, safe to embed in HTML)."""
    code = segno.make(token, error=QR_ERROR, micro=False)
    svg: str = code.svg_inline(scale=QR_SCALE, border=QR_BORDER, title=f"coupon {token[:16]}")
    return svg
