"""`CouponStorage` races between replicas, on every backend: one holder, one conflict, no deadlock.

Replicas are separate `open_storage` calls on one database (separate SQLite connections,
separate PostgreSQL pools), so every race here is the database's to settle.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from coupon_storage_helpers import (
    NOW,
    STORE_A,
    STORE_B,
    STORE_C,
    campaign_with,
    redeemed,
    rejected,
)

from cloud.coupons import new_key_pair
from cloud.storage import open_storage
from cloud.storage.base import AgentIdentity, Storage
from cloud.storage.coupons import CouponStorage, coupon_storage_for
from protocol.ids import uuid7_str


@pytest.fixture
async def replicas(db_url: str, storage: Storage) -> AsyncIterator[list[CouponStorage]]:
    """Four more storages on the same database (after `storage` made the schema)."""
    opened = [await open_storage(db_url) for _ in range(4)]
    try:
        yield [coupon_storage_for(s) for s in opened]
    finally:
        for s in opened:
            await s.close()


async def test_concurrent_rotations_leave_exactly_one_active_key(
    coupons: CouponStorage, replicas: list[CouponStorage]
) -> None:
    campaign, _ = await campaign_with(coupons)
    rotated = await asyncio.gather(
        *(r.rotate_key(campaign.campaign_id, new_key_pair(), NOW) for r in replicas)
    )
    assert all(k is not None for k in rotated)
    stored = await coupons.get_campaign(campaign.campaign_id)
    assert stored is not None
    assert len(stored.keys) == 1 + len(replicas)
    assert sum(k.active for k in stored.keys) == 1


async def test_concurrent_reservations_on_many_replicas_have_exactly_one_holder(
    coupons: CouponStorage, replicas: list[CouponStorage]
) -> None:
    campaign, issued = await campaign_with(coupons, *[True] * 5)
    stores = [AgentIdentity(f"agt-{i}", f"store-{i}") for i in range(12)]
    for c in issued:
        outcomes = await asyncio.gather(
            *(
                replicas[i % len(replicas)].reserve(
                    c.coupon_id, campaign.campaign_id, f"rid-{i}", agent, NOW
                )
                for i, agent in enumerate(stores)
            )
        )
        winners = [o for o in outcomes if o.status == "reserved"]
        assert len(winners) == 1
        assert [o.status for o in outcomes].count("already_redeemed") == len(stores) - 1
        assert {o.hold for o in outcomes} == {winners[0].hold}


async def test_concurrent_double_redemptions_on_replicas_make_exactly_one_conflict(
    coupons: CouponStorage, replicas: list[CouponStorage]
) -> None:
    campaign, issued = await campaign_with(coupons, *[True] * 12)
    # Half were reserved online first (the hold row exists), half have no holder yet: the
    # two ways redemptions of one coupon meet in the database.
    for c in issued[::2]:
        await coupons.reserve(c.coupon_id, campaign.campaign_id, uuid7_str(), STORE_C, NOW)
    pairs = [(redeemed(c, STORE_A), redeemed(c, STORE_B)) for c in issued]
    # Each redemption synced on its own, all at once, each twice (a batch resent while the
    # first send is still in flight), spread over the replicas.
    sends = [
        (agent, r) for a, b in pairs for agent, r in ((STORE_A, a), (STORE_B, b)) for _ in "12"
    ]
    await asyncio.gather(
        *(
            replicas[i % len(replicas)].reconcile(agent, [r], [], NOW)
            for i, (agent, r) in enumerate(sends)
        )
    )
    conflicts = await coupons.list_conflicts(None, None, 100)
    assert sorted(c.coupon_id for c in conflicts) == sorted(c.coupon_id for c in issued)
    for conflict in conflicts:
        assert conflict.stores == ["store-a", "store-b"]
        assert len(conflict.redemptions) == 2
    stats = await coupons.campaign_stats(campaign.campaign_id)
    assert stats is not None
    assert (stats.conflicts, stats.redemptions) == (len(issued), 2 * len(issued))
    for c in issued[1::2]:
        record = await coupons.get_coupon(c.coupon_id)
        assert record is not None
        assert record.hold is not None
        assert record.hold.via == "redemption"


async def test_overlapping_batches_in_any_order_never_deadlock(
    coupons: CouponStorage, replicas: list[CouponStorage]
) -> None:
    campaign, issued = await campaign_with(coupons, *[True] * 6)
    for c in issued:  # held already, so every batch locks existing hold rows
        await coupons.reserve(c.coupon_id, campaign.campaign_id, uuid7_str(), STORE_C, NOW)
    a = [redeemed(c, STORE_A) for c in issued]
    b = [redeemed(c, STORE_B) for c in issued]
    refused = [rejected(c, STORE_A, "expired") for c in issued]
    # The same coupons in opposite orders, and resends of the same rows in opposite orders.
    await asyncio.gather(
        replicas[0].reconcile(STORE_A, a, refused, NOW),
        replicas[1].reconcile(STORE_B, b[::-1], [], NOW),
        replicas[2].reconcile(STORE_A, a[::-1], refused[::-1], NOW),
        replicas[3].reconcile(STORE_B, b, [], NOW),
    )
    conflicts = await coupons.list_conflicts(None, None, 100)
    assert sorted(c.coupon_id for c in conflicts) == sorted(c.coupon_id for c in issued)
    stats = await coupons.campaign_stats(campaign.campaign_id)
    assert stats is not None
    assert (stats.redemptions, stats.rejected) == (2 * len(issued), {"expired": len(issued)})


async def test_a_reservation_racing_a_synced_redemption_leaves_one_holder(
    coupons: CouponStorage, replicas: list[CouponStorage]
) -> None:
    campaign, issued = await campaign_with(coupons, *[True] * 10)
    for c in issued:
        outcome, _ = await asyncio.gather(
            replicas[0].reserve(c.coupon_id, campaign.campaign_id, "online", STORE_B, NOW),
            replicas[1].reconcile(STORE_A, [redeemed(c, STORE_A)], [], NOW),
        )
        record = await coupons.get_coupon(c.coupon_id)
        assert record is not None
        assert record.hold is not None
        won = "reserved" if record.hold.store_id == "store-b" else "already_redeemed"
        assert outcome.status == won
        assert record.hold.via == ("reservation" if won == "reserved" else "redemption")
