"""`StorageCoupons`: the console's `CouponSource` over the cloud's own `CouponStorage`.

Everything goes through the same storage calls and service functions as the admin API
(cloud/views/coupons.py), so the page and `GET /api/campaigns/{id}/stats` never disagree.
"""

from cloud.console.coupons import (
    CampaignSummary,
    ConflictRedemption,
    CouponConflict,
    IssuedCoupon,
)
from cloud.coupon_models import IssueRequest
from cloud.coupons import issue
from cloud.storage.coupon_records import CampaignRecord, CampaignStats, ConflictRecord
from cloud.storage.coupons import CouponStorage

TOP_STORES = 5  # per campaign: the stores with most redemptions


class StorageCoupons:
    """A `CouponSource` reading and issuing through one `CouponStorage`."""

    def __init__(self, storage: CouponStorage, max_campaigns: int = 50) -> None:
        self._storage = storage
        self._max_campaigns = max_campaigns  # each costs one stats read per page view

    async def list_campaigns(self) -> list[CampaignSummary]:
        """The newest `max_campaigns` campaigns, newest first, each with its stats."""
        campaigns = (await self._storage.list_campaigns())[::-1][: self._max_campaigns]
        out = []
        for campaign in campaigns:
            stats = await self._storage.campaign_stats(campaign.campaign_id)
            if stats is not None:  # None: gone between the two reads (never deleted today)
                out.append(_summary(campaign, stats))
        return out

    async def recent_conflicts(self, limit: int) -> list[CouponConflict]:
        """The latest conflicts, each with every redemption of its coupon."""
        return [_conflict(c) for c in await self._storage.recent_conflicts(limit)]

    async def issue(self, campaign_id: int, request: IssueRequest) -> list[IssuedCoupon]:
        """Sign and store coupons with the campaign's active key (cloud.coupons.issue)."""
        issued = await issue(self._storage, campaign_id, request)
        return [
            IssuedCoupon(c.coupon_id, c.token, c.value_minor, c.single_use, c.valid_to, c.stores)
            for c in issued
        ]


def _summary(campaign: CampaignRecord, stats: CampaignStats) -> CampaignSummary:
    busiest = sorted(stats.stores, key=lambda s: (-s.redemptions, s.store_id))
    top = [(s.store_id, s.redemptions) for s in busiest[:TOP_STORES] if s.redemptions]
    return CampaignSummary(
        campaign_id=campaign.campaign_id,
        name=campaign.name,
        currency=campaign.currency,
        max_offline_value=campaign.max_offline_value,
        valid_from=campaign.valid_from,
        valid_to=campaign.valid_to,
        stores=None if campaign.stores is None else len(campaign.stores),
        issued=stats.issued,
        redeemed=stats.redeemed_coupons,
        redemptions=stats.redemptions,
        value_redeemed=stats.value_redeemed,
        offline_redemptions=stats.offline_redemptions,
        reserved_online=stats.reserved_online,
        conflicts=stats.conflicts,
        rejected=stats.rejected,
        top_stores=tuple(top),
    )


def _conflict(conflict: ConflictRecord) -> CouponConflict:
    return CouponConflict(
        coupon_id=conflict.coupon_id,
        campaign_id=conflict.campaign_id,
        detected_at=conflict.detected_at,
        redemptions=tuple(
            ConflictRedemption(
                r.store_id, r.agent_id, r.mode, r.occurred_at, r.received_at, r.staff_id
            )
            for r in conflict.redemptions
        ),
    )
