"""Reconciliation at ingest: coupon events of a batch become redemption and rejection records.

Runs for every coupon event of a batch, new or duplicate, because it is idempotent: a batch
whose answer was lost is sent again, and its events must still reach the coupon tables even
though the event log already holds them (DESIGN.md guarantee 2, end to end).
"""

from collections.abc import Sequence
from datetime import datetime

import orjson

from cloud.storage.base import AgentIdentity, EventRow
from cloud.storage.coupon_records import RedemptionRecord, RejectionRecord
from cloud.storage.coupons import CouponStorage
from protocol.coupon_events import COUPON_EVENT_KINDS


async def reconcile_rows(
    coupons: CouponStorage, agent: AgentIdentity, rows: Sequence[EventRow], now: datetime
) -> int:
    """Record the coupon events among `rows` (already validated); how many there were."""
    redemptions: list[RedemptionRecord] = []
    rejections: list[RejectionRecord] = []
    for row in rows:
        if row.kind not in COUPON_EVENT_KINDS:
            continue
        payload = orjson.loads(row.body)["payload"]
        if row.kind == "coupon.redeemed":
            redemptions.append(
                RedemptionRecord(
                    redemption_id=payload["redemption_id"],
                    event_id=row.event_id,
                    coupon_id=payload["coupon_id"],
                    campaign_id=payload["campaign_id"],
                    store_id=agent.store_id,
                    agent_id=agent.agent_id,
                    value_minor=payload["value_minor"],
                    mode=payload["reservation"],
                    staff_id=payload.get("staff_id"),
                    occurred_at=row.occurred_at,
                    received_at=now,
                    single_use=payload["single_use"],
                )
            )
        else:
            rejections.append(
                RejectionRecord(
                    event_id=row.event_id,
                    campaign_id=payload.get("campaign_id"),
                    coupon_id=payload.get("coupon_id"),
                    store_id=agent.store_id,
                    reason=payload["reason"],
                    occurred_at=row.occurred_at,
                )
            )
    if redemptions or rejections:
        await coupons.reconcile(agent, redemptions, rejections, now)
    return len(redemptions) + len(rejections)
