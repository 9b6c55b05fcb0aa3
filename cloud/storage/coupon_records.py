"""Records of the coupon tables as storage takes and returns them (docs/COUPONS.md).

Times are aware UTC datetimes, as everywhere in storage. Private key bytes appear in exactly
two records, `KeyPair` and `SigningKey`, both with `repr=False` so no log line can show them.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A fresh Ed25519 key pair, raw 32-byte halves."""

    public_key: bytes
    private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key a campaign issues with now; used only by issuing, never returned by the API."""

    key_id: int
    campaign_id: int
    private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CouponKeyRecord:
    """A campaign's public key; `last_valid_to` is the latest expiry of a coupon it signed."""

    key_id: int
    campaign_id: int
    public_key: bytes
    created_at: datetime
    retired_at: datetime | None
    last_valid_to: datetime | None

    @property
    def active(self) -> bool:
        """True for the key new coupons are signed with."""
        return self.retired_at is None


@dataclass(frozen=True, slots=True)
class NewCampaign:
    """A campaign to create; `stores` None means every store."""

    name: str
    currency: str
    max_offline_value: int
    valid_from: datetime
    valid_to: datetime
    stores: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A stored campaign with all its keys, oldest first."""

    campaign_id: int
    name: str
    currency: str
    max_offline_value: int
    valid_from: datetime
    valid_to: datetime
    stores: tuple[str, ...] | None
    created_at: datetime
    keys: tuple[CouponKeyRecord, ...]


@dataclass(frozen=True, slots=True)
class ConfigCampaign:
    """A campaign as one store's business config needs it (no store list, all keys)."""

    campaign_id: int
    name: str
    currency: str
    max_offline_value: int
    valid_from: datetime
    valid_to: datetime
    redeemable_here: bool
    keys: tuple[CouponKeyRecord, ...]


@dataclass(frozen=True, slots=True)
class NewCoupon:
    """One signed coupon to store; `stores` is the token's own scope (None: not narrowed)."""

    coupon_id: int
    campaign_id: int
    key_id: int
    value_minor: int
    single_use: bool
    stores: tuple[str, ...] | None
    valid_from: datetime
    valid_to: datetime
    token: str


HoldVia: TypeAlias = Literal["reservation", "redemption"]


@dataclass(frozen=True, slots=True)
class CouponHold:
    """Who holds a single-use coupon fleet-wide: an online reservation or the first sync."""

    store_id: str
    redemption_id: str
    agent_id: str
    held_at: datetime
    via: HoldVia


@dataclass(frozen=True, slots=True)
class CouponRecord:
    """An issued coupon and its current holder."""

    coupon: NewCoupon
    issued_at: datetime
    hold: CouponHold | None


ReserveStatus: TypeAlias = Literal["reserved", "not_required", "already_redeemed", "unknown"]


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """What a reservation did; `hold` is the holder after it (this caller or another store)."""

    status: ReserveStatus
    hold: CouponHold | None = None


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    """One `coupon.redeemed` event as reconciliation keeps it."""

    redemption_id: str
    event_id: str
    coupon_id: int
    campaign_id: int
    store_id: str
    agent_id: str
    value_minor: int
    mode: str
    staff_id: str | None
    occurred_at: datetime
    received_at: datetime
    single_use: bool = True


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """One `coupon.rejected` event as the stats count it."""

    event_id: str
    campaign_id: int | None
    coupon_id: int | None
    store_id: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """A single-use coupon redeemed by more than one redemption; `cursor` pages the list."""

    cursor: int
    coupon_id: int
    campaign_id: int
    detected_at: datetime
    updated_at: datetime
    redemptions: tuple[RedemptionRecord, ...]

    @property
    def stores(self) -> list[str]:
        """Every store that redeemed the coupon, sorted."""
        return sorted({r.store_id for r in self.redemptions})


@dataclass(frozen=True, slots=True)
class StoreCouponStats:
    """One store's share of a campaign."""

    store_id: str
    redemptions: int = 0
    value_redeemed: int = 0
    offline_redemptions: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CampaignStats:
    """A campaign's totals; every total is the sum of its per-store parts."""

    campaign_id: int
    issued: int
    reserved_online: int
    redeemed_coupons: int
    conflicts: int
    stores: tuple[StoreCouponStats, ...]

    @property
    def redemptions(self) -> int:
        """Redemption records synced, conflicting ones included."""
        return sum(s.redemptions for s in self.stores)

    @property
    def value_redeemed(self) -> int:
        """Sum of redeemed values in the campaign's minor units."""
        return sum(s.value_redeemed for s in self.stores)

    @property
    def offline_redemptions(self) -> int:
        """Redemptions made under the offline policy."""
        return sum(s.offline_redemptions for s in self.stores)

    @property
    def rejected(self) -> dict[str, int]:
        """Rejections by reason, over every store."""
        total: dict[str, int] = {}
        for store in self.stores:
            for reason, count in store.rejected.items():
                total[reason] = total.get(reason, 0) + count
        return dict(sorted(total.items()))
