"""Coupon and staff events survive the byte cap; a guard commits with its event or not at all."""

import asyncio
from pathlib import Path

from agent.coupons import ledger
from agent.outbox import Identity, Outbox
from protocol import EVENT_ADAPTER, ScanPayload
from protocol.constants import DROPPABLE_KINDS
from protocol.coupon_events import (
    COUPON_EVENT_KINDS,
    CouponRedeemedPayload,
    CouponRejectedPayload,
    StaffLoginPayload,
)

IDENTITY = Identity("agent-1", "store-1")
SCAN = ScanPayload(raw_b64="QUJD" * 200, text="A" * 600)
CAP = 1024 * 1024


def redeemed(coupon_id: int) -> CouponRedeemedPayload:
    return CouponRedeemedPayload(
        redemption_id=f"r-{coupon_id}", campaign_id=1, coupon_id=coupon_id, key_id=1,
        value_minor=100, currency="CNY", single_use=True, reservation="offline",
    )  # fmt: skip


def test_no_coupon_or_staff_kind_is_droppable() -> None:
    kept = COUPON_EVENT_KINDS | {"staff.login", "staff.logout"}
    assert not kept & DROPPABLE_KINDS


async def test_at_the_cap_scans_go_and_every_coupon_event_stays(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY, max_bytes=CAP) as outbox:
        while (await outbox.stats()).backlog_bytes < CAP - 4096:
            await asyncio.gather(*(outbox.append("scanner-1", SCAN) for _ in range(50)))
        coupon_results = []
        for i in range(1, 2001):  # ~0.9 MiB more than fits
            coupon_results.append(await outbox.append("scanner-1", redeemed(i)))
            rejected = CouponRejectedPayload(reason="expired", coupon_id=i, campaign_id=1)
            coupon_results.append(await outbox.append("scanner-1", rejected))
            if i % 500 == 0:
                login = StaffLoginPayload(staff_id=f"STAFF-{i}")
                coupon_results.append(await outbox.append("scanner-1", login))
        stats = await outbox.stats()
        batch = await outbox.read_batch(100_000, 64 * CAP)
    assert all(result.dropped is None for result in coupon_results)
    kinds = [EVENT_ADAPTER.validate_json(row.body).kind for row in batch]
    assert kinds.count("coupon.redeemed") == 2000
    assert kinds.count("coupon.rejected") == 2000
    assert kinds.count("staff.login") == 4
    assert kinds.count("scan") == 0  # every scan made room, oldest first
    assert stats.losses["outbox_full"] > 0
    assert stats.over_cap  # the agent alarms and keeps them


async def test_a_refused_guard_writes_no_event(tmp_path: Path) -> None:
    async with await Outbox.open(tmp_path / "o.db", IDENTITY) as outbox:
        claim = ledger.claim(7, 1, "r-1", "offline", 100, "scanner-1", None, 2**31)
        again = ledger.claim(7, 1, "r-2", "offline", 100, "scanner-2", None, 2**31)
        results = await asyncio.gather(
            outbox.append("scanner-1", redeemed(7), guard=claim),
            outbox.append("scanner-2", redeemed(7), guard=again),
        )
        assert [r.dropped for r in results] == [None, ledger.REFUSED]
        assert results[0].seq == 1
        entry = await ledger.lookup(outbox, 7)
        assert entry is not None
        assert (entry.redemption_id, entry.device_id) == ("r-1", "scanner-1")
        assert (await outbox.stats()).backlog_events == 1
        assert (await outbox.stats()).losses == {}  # a refusal is not a loss
