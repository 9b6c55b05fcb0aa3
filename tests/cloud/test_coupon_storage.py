"""The `CouponStorage` contract, run against every backend (SQLite and PostgreSQL) alike."""

from dataclasses import replace
from datetime import timedelta

import pytest
from coupon_storage_helpers import (
    NOW,
    STORE_A,
    STORE_B,
    STORE_C,
    campaign_with,
    coupon,
    new_campaign,
    redeemed,
    rejected,
)

from cloud.coupons import new_key_pair
from cloud.errors import StorageError
from cloud.storage.base import Storage
from cloud.storage.coupons import CouponStorage, coupon_storage_for


async def test_campaigns_round_trip_with_keys_and_aware_times(coupons: CouponStorage) -> None:
    key = new_key_pair()
    created = await coupons.create_campaign(new_campaign(stores=("s-2", "s-1", "s-2")), key, NOW)
    assert created.stores == ("s-1", "s-2")  # sorted, without repeats
    assert (created.valid_from, created.valid_to) == (
        NOW - timedelta(days=1),
        NOW + timedelta(days=30),
    )
    assert created.created_at == NOW
    assert created.created_at.utcoffset() == timedelta(0)
    (only_key,) = created.keys
    assert only_key.public_key == key.public_key
    assert only_key.active
    assert only_key.last_valid_to is None  # nothing signed yet
    everyone = await coupons.create_campaign(new_campaign(name="All"), new_key_pair(), NOW)
    assert everyone.stores is None
    assert await coupons.list_campaigns() == [created, everyone]
    assert await coupons.get_campaign(created.campaign_id) == created
    assert await coupons.get_campaign(everyone.campaign_id + 1000) is None
    assert created.keys[0].key_id != everyone.keys[0].key_id  # key ids are fleet-wide


async def test_rotation_retires_the_old_key_and_signs_with_the_new(
    coupons: CouponStorage,
) -> None:
    campaign, (old,) = await campaign_with(coupons, True)
    first = await coupons.signing_key(campaign.campaign_id)
    assert first is not None
    assert first.key_id == campaign.keys[0].key_id
    later = NOW + timedelta(minutes=5)
    new = await coupons.rotate_key(campaign.campaign_id, key := new_key_pair(), later)
    assert new is not None
    assert new.active
    assert new.public_key == key.public_key
    signing = await coupons.signing_key(campaign.campaign_id)
    assert signing is not None
    assert (signing.key_id, signing.private_key) == (new.key_id, key.private_key)
    stored = await coupons.get_campaign(campaign.campaign_id)
    assert stored is not None
    retired, active = stored.keys
    assert retired.retired_at == later
    assert retired.last_valid_to == old.valid_to
    assert active == new
    assert await coupons.rotate_key(campaign.campaign_id + 1000, new_key_pair(), NOW) is None
    assert await coupons.signing_key(campaign.campaign_id + 1000) is None


async def test_issuing_is_all_or_nothing_and_coupons_read_back(coupons: CouponStorage) -> None:
    campaign, (single, multi) = await campaign_with(coupons, True, False)
    scoped = coupon(campaign, stores=("s-9", "s-1"))
    assert await coupons.issue_coupons([scoped], NOW)
    record = await coupons.get_coupon(scoped.coupon_id)
    assert record is not None
    assert record.coupon == replace(scoped, stores=("s-1", "s-9"))
    assert record.issued_at == NOW
    assert record.hold is None
    multi_record = await coupons.get_coupon(multi.coupon_id)
    assert multi_record is not None
    assert multi_record.coupon == multi
    # One id already taken: the whole batch is refused, its fresh id stored neither.
    fresh = coupon(campaign)
    assert not await coupons.issue_coupons([fresh, replace(single, token="again")], NOW)
    assert await coupons.get_coupon(fresh.coupon_id) is None
    taken = await coupons.get_coupon(single.coupon_id)
    assert taken is not None
    assert taken.coupon.token == single.token
    assert await coupons.get_coupon(fresh.coupon_id + 1) is None


async def test_config_lists_live_campaigns_with_keys_that_can_still_verify(
    coupons: CouponStorage,
) -> None:
    ended, _ = await campaign_with(coupons, valid_to=NOW - timedelta(seconds=1))
    elsewhere, _ = await campaign_with(coupons, stores=("store-b",))
    live, _ = await campaign_with(coupons)
    # A coupon that expired under the old key: once rotated, that key verifies nothing.
    expired = coupon(live, valid_to=NOW - timedelta(hours=1))
    assert await coupons.issue_coupons([expired], NOW)
    await coupons.rotate_key(live.campaign_id, new_key_pair(), NOW)
    config = await coupons.config_campaigns(STORE_A.store_id, NOW)
    assert [c.campaign_id for c in config] == [elsewhere.campaign_id, live.campaign_id]
    assert [c.redeemable_here for c in config] == [False, True]
    assert [k.active for k in config[1].keys] == [True]
    assert ended.campaign_id not in {c.campaign_id for c in config}
    # Two hours ago: the first campaign had not ended, and the old key's coupon was live.
    earlier = await coupons.config_campaigns(STORE_B.store_id, NOW - timedelta(hours=2))
    assert [c.campaign_id for c in earlier] == [c.campaign_id for c in (ended, elsewhere, live)]
    assert [c.redeemable_here for c in earlier] == [True, True, True]
    assert [k.active for k in earlier[-1].keys] == [False, True]


async def test_reserve_is_single_use_fleet_wide_and_resending_answers_alike(
    coupons: CouponStorage,
) -> None:
    campaign, (single, multi) = await campaign_with(coupons, True, False)
    cid = campaign.campaign_id
    assert (await coupons.reserve(single.coupon_id + 1, cid, "r0", STORE_A, NOW)).status == (
        "unknown"
    )
    assert (await coupons.reserve(single.coupon_id, cid + 1, "r0", STORE_A, NOW)).status == (
        "unknown"
    )
    assert (await coupons.reserve(multi.coupon_id, cid, "r0", STORE_A, NOW)).status == (
        "not_required"
    )
    first = await coupons.reserve(single.coupon_id, cid, "r1", STORE_A, NOW)
    assert first.status == "reserved"
    assert first.hold is not None
    assert (first.hold.store_id, first.hold.redemption_id, first.hold.via) == (
        "store-a",
        "r1",
        "reservation",
    )
    assert first.hold.held_at == NOW
    later = NOW + timedelta(seconds=3)
    assert await coupons.reserve(single.coupon_id, cid, "r1", STORE_A, later) == first
    # Another device of the holding store: the store's own ledger arbitrates.
    assert (await coupons.reserve(single.coupon_id, cid, "r2", STORE_A, later)).status == (
        "reserved"
    )
    other = await coupons.reserve(single.coupon_id, cid, "r3", STORE_B, later)
    assert (other.status, other.hold) == ("already_redeemed", first.hold)
    record = await coupons.get_coupon(single.coupon_id)
    assert record is not None
    assert record.hold == first.hold


async def test_an_offline_redemption_synced_first_holds_the_coupon(
    coupons: CouponStorage,
) -> None:
    campaign, (c,) = await campaign_with(coupons, True)
    redemption = redeemed(c, STORE_A)
    await coupons.reconcile(STORE_A, [redemption], [], NOW)
    record = await coupons.get_coupon(c.coupon_id)
    assert record is not None
    assert record.hold is not None
    assert (record.hold.store_id, record.hold.redemption_id, record.hold.via) == (
        "store-a",
        redemption.redemption_id,
        "redemption",
    )
    late = await coupons.reserve(c.coupon_id, campaign.campaign_id, "r9", STORE_B, NOW)
    assert late.status == "already_redeemed"
    assert await coupons.list_conflicts(None, None, 10) == []


async def test_a_replayed_reconcile_changes_nothing(coupons: CouponStorage) -> None:
    campaign, (single, multi) = await campaign_with(coupons, True, False)
    redemptions = [redeemed(single, STORE_A), redeemed(multi, STORE_A), redeemed(multi, STORE_A)]
    rejections = [rejected(single, STORE_A, "expired"), rejected(None, STORE_A, "bad_signature")]
    await coupons.reconcile(STORE_A, redemptions, rejections, NOW)
    stats = await coupons.campaign_stats(campaign.campaign_id)
    holder = await coupons.get_coupon(single.coupon_id)
    for _ in range(3):
        await coupons.reconcile(STORE_A, redemptions, rejections, NOW + timedelta(minutes=1))
    assert await coupons.campaign_stats(campaign.campaign_id) == stats
    assert await coupons.get_coupon(single.coupon_id) == holder
    assert await coupons.list_conflicts(None, None, 10) == []
    assert stats is not None
    assert (stats.redemptions, stats.redeemed_coupons, stats.rejected) == (3, 2, {"expired": 1})


async def test_a_double_redemption_is_one_conflict_however_many_arrive(
    coupons: CouponStorage,
) -> None:
    campaign, (c, other) = await campaign_with(coupons, True, True)
    first, second, third = redeemed(c, STORE_A), redeemed(c, STORE_B), redeemed(c, STORE_C)
    await coupons.reconcile(STORE_A, [first], [], NOW)
    await coupons.reconcile(STORE_B, [second], [], NOW + timedelta(seconds=1))
    (conflict,) = await coupons.list_conflicts(None, None, 10)
    assert (conflict.coupon_id, conflict.campaign_id) == (c.coupon_id, campaign.campaign_id)
    assert conflict.detected_at == conflict.updated_at == NOW + timedelta(seconds=1)
    assert conflict.stores == ["store-a", "store-b"]
    # A third store, and replays of everything: still one conflict, now naming three stores.
    await coupons.reconcile(STORE_C, [third], [], NOW + timedelta(seconds=2))
    await coupons.reconcile(STORE_B, [second], [], NOW + timedelta(seconds=3))
    (again,) = await coupons.list_conflicts(None, None, 10)
    assert (again.cursor, again.detected_at) == (conflict.cursor, conflict.detected_at)
    assert again.updated_at == NOW + timedelta(seconds=2)
    assert again.stores == ["store-a", "store-b", "store-c"]
    assert {r.redemption_id for r in again.redemptions} == {
        first.redemption_id,
        second.redemption_id,
        third.redemption_id,
    }
    held = await coupons.get_coupon(c.coupon_id)
    assert held is not None
    assert held.hold is not None
    assert held.hold.redemption_id == first.redemption_id
    untouched = await coupons.get_coupon(other.coupon_id)
    assert untouched is not None
    assert untouched.hold is None
    stats = await coupons.campaign_stats(campaign.campaign_id)
    assert stats is not None
    assert (stats.conflicts, stats.redeemed_coupons, stats.redemptions) == (1, 1, 3)


async def test_a_multi_use_coupon_or_the_issued_flag_decides_what_conflicts(
    coupons: CouponStorage,
) -> None:
    _, (multi, single) = await campaign_with(coupons, False, True)
    # The issued coupon's flag wins over the event's claim.
    await coupons.reconcile(STORE_A, [redeemed(multi, STORE_A)], [], NOW)
    await coupons.reconcile(STORE_B, [replace(redeemed(multi, STORE_B), single_use=True)], [], NOW)
    await coupons.reconcile(
        STORE_A, [replace(redeemed(single, STORE_A), single_use=False)], [], NOW
    )
    await coupons.reconcile(STORE_B, [redeemed(single, STORE_B)], [], NOW)
    assert [c.coupon_id for c in await coupons.list_conflicts(None, None, 10)] == [single.coupon_id]
    record = await coupons.get_coupon(multi.coupon_id)
    assert record is not None
    assert record.hold is None
    # A coupon this cloud never issued keeps the event's flag.
    stranger = replace(single, coupon_id=single.coupon_id + 1)
    await coupons.reconcile(STORE_A, [redeemed(stranger, STORE_A)], [], NOW)
    await coupons.reconcile(STORE_B, [redeemed(stranger, STORE_B)], [], NOW)
    assert len(await coupons.list_conflicts(None, None, 10)) == 2


async def test_stats_add_up_per_store(coupons: CouponStorage) -> None:
    campaign, (a, b, multi) = await campaign_with(coupons, True, True, False)
    assert await coupons.issue_coupons([coupon(campaign)], NOW)
    await coupons.reserve(a.coupon_id, campaign.campaign_id, "r-a", STORE_A, NOW)
    await coupons.reconcile(
        STORE_A,
        [redeemed(a, STORE_A, "reserved"), redeemed(multi, STORE_A), redeemed(multi, STORE_A)],
        [rejected(b, STORE_A, "expired"), rejected(b, STORE_A, "expired")],
        NOW,
    )
    await coupons.reconcile(
        STORE_B, [redeemed(b, STORE_B)], [rejected(a, STORE_B, "already_redeemed")], NOW
    )
    stats = await coupons.campaign_stats(campaign.campaign_id)
    assert stats is not None
    assert (stats.issued, stats.reserved_online, stats.redeemed_coupons, stats.conflicts) == (
        4,
        1,
        3,
        0,
    )
    part_a, part_b = stats.stores
    assert (part_a.store_id, part_a.redemptions, part_a.value_redeemed) == ("store-a", 3, 6000)
    assert (part_a.offline_redemptions, part_a.rejected) == (2, {"expired": 2})
    assert (part_b.store_id, part_b.redemptions, part_b.offline_redemptions) == ("store-b", 1, 1)
    assert part_b.rejected == {"already_redeemed": 1}
    assert stats.rejected == {"already_redeemed": 1, "expired": 2}
    assert (stats.redemptions, stats.value_redeemed) == (4, 8000)
    assert type(stats.value_redeemed) is int
    assert await coupons.campaign_stats(campaign.campaign_id + 1000) is None
    empty, _ = await campaign_with(coupons)
    assert await coupons.campaign_stats(empty.campaign_id) == replace(
        stats, campaign_id=empty.campaign_id, issued=0, reserved_online=0, redeemed_coupons=0,
        stores=(),
    )  # fmt: skip


async def test_conflicts_page_by_cursor_and_campaign_and_read_newest_first(
    coupons: CouponStorage,
) -> None:
    one, first = await campaign_with(coupons, True, True, True)
    two, second = await campaign_with(coupons, True, True)
    for c in [first[0], second[0], first[1], second[1], first[2]]:
        await coupons.reconcile(STORE_A, [redeemed(c, STORE_A)], [], NOW)
        await coupons.reconcile(STORE_B, [redeemed(c, STORE_B)], [], NOW)
    every = await coupons.list_conflicts(None, None, 10)
    assert [c.coupon_id for c in every] == [
        c.coupon_id for c in [first[0], second[0], first[1], second[1], first[2]]
    ]
    cursors = [c.cursor for c in every]
    assert cursors == sorted(cursors)
    page = await coupons.list_conflicts(None, cursors[1], 2)
    assert page == every[2:4]
    only_one = await coupons.list_conflicts(one.campaign_id, None, 10)
    assert [c.campaign_id for c in only_one] == [one.campaign_id] * 3
    assert await coupons.list_conflicts(two.campaign_id, cursors[3], 10) == []
    assert await coupons.recent_conflicts(2) == every[:-3:-1]
    assert all(len(c.redemptions) == 2 for c in every)


async def test_a_closed_storage_fails_with_storage_error(storage: Storage) -> None:
    coupons = coupon_storage_for(storage)
    await storage.close()
    with pytest.raises(StorageError):
        await coupons.list_campaigns()
    with pytest.raises(StorageError):
        await coupons.reserve(1, 1, "r", STORE_A, NOW)
    with pytest.raises(StorageError):
        await coupons.reconcile(STORE_A, [], [rejected(None, STORE_A, "expired")], NOW)


def test_only_known_backends_have_coupon_storage() -> None:
    with pytest.raises(TypeError, match="no coupon storage for object"):
        coupon_storage_for(object())  # type: ignore[arg-type]
