"""The coupon storage interface, beside `Storage` so each backend can add it on its own.

Every piece of coupon state the fleet must agree on lives behind this interface, in the
database, never in a replica's memory: campaigns and their keys, issued coupons, the
fleet-wide single-use holds, reconciled redemptions and conflicts. Contract points:
- `reserve` is atomic in the database: of any number of concurrent callers, on any number of
  replicas, exactly one store ends up holding a single-use coupon. Resending the same
  `redemption_id` is answered like the first time.
- `reconcile` is idempotent: redemptions are keyed by `redemption_id`, rejections by
  `event_id`, so a batch replayed after a lost answer changes nothing. A single-use coupon
  with more than one redemption becomes exactly one conflict, however many arrive.
- Failures surface as `StorageError`; times go in and out as aware UTC datetimes.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cloud.storage.base import AgentIdentity, Storage
from cloud.storage.coupon_records import (
    CampaignRecord,
    CampaignStats,
    ConfigCampaign,
    ConflictRecord,
    CouponKeyRecord,
    CouponRecord,
    KeyPair,
    NewCampaign,
    NewCoupon,
    RedemptionRecord,
    RejectionRecord,
    ReserveOutcome,
    SigningKey,
)


class CouponStorage(Protocol):
    """Async storage of campaigns, coupons, reservations and reconciliation."""

    async def create_campaign(
        self, campaign: NewCampaign, key: KeyPair, now: datetime
    ) -> CampaignRecord:
        """Store a campaign with its first (active) key pair."""

    async def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""

    async def get_campaign(self, campaign_id: int) -> CampaignRecord | None:
        """One campaign with all its keys, or None."""

    async def rotate_key(
        self, campaign_id: int, key: KeyPair, now: datetime
    ) -> CouponKeyRecord | None:
        """Retire the active key and make `key` active, in one transaction; None if unknown."""

    async def signing_key(self, campaign_id: int) -> SigningKey | None:
        """The active private key of a campaign (issuing only), or None."""

    async def issue_coupons(self, coupons: Sequence[NewCoupon], now: datetime) -> bool:
        """Store signed coupons in one transaction; False (nothing stored) if an id is taken."""

    async def get_coupon(self, coupon_id: int) -> CouponRecord | None:
        """One issued coupon with its current holder, or None."""

    async def config_campaigns(self, store_id: str, now: datetime) -> list[ConfigCampaign]:
        """Campaigns a store must know about now (not yet ended), each with its live keys."""

    async def reserve(
        self,
        coupon_id: int,
        campaign_id: int,
        redemption_id: str,
        agent: AgentIdentity,
        now: datetime,
    ) -> ReserveOutcome:
        """Claim single use of a coupon for `agent`'s store, atomically (see module doc)."""

    async def reconcile(
        self,
        agent: AgentIdentity,
        redemptions: Sequence[RedemptionRecord],
        rejections: Sequence[RejectionRecord],
        now: datetime,
    ) -> None:
        """Record synced coupon events idempotently, flagging double redemptions as conflicts."""

    async def campaign_stats(self, campaign_id: int) -> CampaignStats | None:
        """A campaign's totals and per-store parts, or None when unknown."""

    async def list_conflicts(
        self, campaign_id: int | None, after: int | None, limit: int
    ) -> list[ConflictRecord]:
        """Up to `limit` conflicts with cursor > `after`, oldest first."""

    async def recent_conflicts(self, limit: int) -> list[ConflictRecord]:
        """The `limit` latest conflicts (highest cursor), newest first, for the console."""


def coupon_storage_for(storage: Storage) -> CouponStorage:
    """The coupon storage living in the same database as `storage` (same connection/pool)."""
    from cloud.storage.postgres import PostgresStorage
    from cloud.storage.sqlite import SqliteStorage

    if isinstance(storage, SqliteStorage):
        from cloud.storage.sqlite_coupons import SqliteCouponStorage

        return SqliteCouponStorage(storage)
    if isinstance(storage, PostgresStorage):
        from cloud.storage.postgres.coupons import PostgresCouponStorage

        return PostgresCouponStorage(storage)
    raise TypeError(f"no coupon storage for {type(storage).__name__}")
