"""Builders of coupon records for the `CouponStorage` tests (test_coupon_storage*.py)."""

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cloud.coupons import new_key_pair
from cloud.storage.base import AgentIdentity
from cloud.storage.coupon_records import (
    CampaignRecord,
    NewCampaign,
    NewCoupon,
    RedemptionRecord,
    RejectionRecord,
)
from cloud.storage.coupons import CouponStorage
from protocol.ids import uuid7_str

NOW = datetime.now(UTC)
STORE_A = AgentIdentity("agt-a", "store-a")
STORE_B = AgentIdentity("agt-b", "store-b")
STORE_C = AgentIdentity("agt-c", "store-c")


def new_campaign(**overrides: object) -> NewCampaign:
    fields: dict[str, object] = {
        "name": "Double Eleven",
        "currency": "CNY",
        "max_offline_value": 5000,
        "valid_from": NOW - timedelta(days=1),
        "valid_to": NOW + timedelta(days=30),
        "stores": None,
        **overrides,
    }
    return NewCampaign(**fields)  # type: ignore[arg-type]


def coupon(campaign: CampaignRecord, single_use: bool = True, **overrides: object) -> NewCoupon:
    made = NewCoupon(
        coupon_id=secrets.randbits(53),
        campaign_id=campaign.campaign_id,
        key_id=campaign.keys[-1].key_id,
        value_minor=2000,
        single_use=single_use,
        stores=None,
        valid_from=campaign.valid_from,
        valid_to=campaign.valid_to,
        token=f"token-{secrets.token_hex(4)}",
    )
    return replace(made, **overrides)  # type: ignore[arg-type]


def redeemed(c: NewCoupon, agent: AgentIdentity, mode: str = "offline") -> RedemptionRecord:
    return RedemptionRecord(
        redemption_id=uuid7_str(),
        event_id=uuid7_str(),
        coupon_id=c.coupon_id,
        campaign_id=c.campaign_id,
        store_id=agent.store_id,
        agent_id=agent.agent_id,
        value_minor=c.value_minor,
        mode=mode,
        staff_id="staff-1",
        occurred_at=NOW,
        received_at=NOW,
        single_use=c.single_use,
    )


def rejected(c: NewCoupon | None, agent: AgentIdentity, reason: str) -> RejectionRecord:
    return RejectionRecord(
        event_id=uuid7_str(),
        campaign_id=None if c is None else c.campaign_id,
        coupon_id=None if c is None else c.coupon_id,
        store_id=agent.store_id,
        reason=reason,
        occurred_at=NOW,
    )


async def campaign_with(
    coupons: CouponStorage, *made: bool, **overrides: object
) -> tuple[CampaignRecord, list[NewCoupon]]:
    """A campaign and one issued coupon per flag in `made` (True: single use)."""
    campaign = await coupons.create_campaign(new_campaign(**overrides), new_key_pair(), NOW)
    issued = [coupon(campaign, single_use) for single_use in made]
    assert await coupons.issue_coupons(issued, NOW)
    return campaign, issued
