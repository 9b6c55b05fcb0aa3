"""Coupon wire models: event payloads (coupon.*, staff.*) and the agent-facing coupon API bodies.

Crypto-free on purpose: `protocol.events` imports this module, and an agent that only records
scans should not load `cryptography`. The token format itself is `protocol.coupons`.
"""

from typing import Annotated, Final, Literal, TypeAlias, get_args

from pydantic import AwareDatetime, Field

from protocol.base import Frozen, Id, Short
from protocol.settings import DeviceSettings, ReceiptSettings, ScanRules, Version

# Token field ranges (docs/COUPONS.md "Layout"); coupon ids stop at 2**63 - 1 because the
# cloud stores them in a signed 64-bit column (SQLite INTEGER, PostgreSQL bigint).
U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
CouponId = Annotated[int, Field(ge=0, le=2**63 - 1)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 alphabetic code")]
Fingerprint = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]

# Why a token fails verification, one per `protocol.coupons.CouponError` subclass.
TokenReason: TypeAlias = Literal[
    "bad_format", "unknown_key", "bad_signature", "expired", "not_yet_valid", "wrong_store"
]
# Why the agent refused a coupon: a token reason, or one its ledger, policies or the cloud's
# reservation decide (`unknown_coupon`: genuinely signed, but the cloud never issued it).
CouponRejectReason: TypeAlias = Literal[
    TokenReason,
    "already_redeemed_here",
    "already_redeemed_elsewhere",
    "over_offline_limit",
    "unknown_coupon",
]
TOKEN_REASONS: Final[tuple[str, ...]] = get_args(TokenReason)
REJECT_REASONS: Final[tuple[str, ...]] = get_args(CouponRejectReason)

# Where the token came from: a scanner, a mirror's coupon claim, or the store POS's local API.
Channel: TypeAlias = Literal["scanner", "mirror", "pos"]
# How single use was ensured: reserved online, redeemed under the offline policy, or moot.
ReservationMode: TypeAlias = Literal["reserved", "offline", "not_required"]

# Kinds the cloud reconciles at ingest; never in DROPPABLE_KINDS (DESIGN.md guarantee 5).
COUPON_EVENT_KINDS: Final = frozenset({"coupon.redeemed", "coupon.rejected"})


class CouponRedeemedPayload(Frozen):
    """A coupon was redeemed; `redemption_id` is unique per redemption, fleet-wide."""

    redemption_id: Id
    campaign_id: U32
    coupon_id: CouponId
    key_id: U32
    value_minor: U32
    currency: Currency
    single_use: bool
    reservation: ReservationMode
    channel: Channel = "scanner"
    staff_id: Id | None = None
    pos_ref: Short | None = None


class CouponRejectedPayload(Frozen):
    """A coupon was refused; ids are set when the token parsed far enough to read them."""

    reason: CouponRejectReason
    detail: Short | None = None
    channel: Channel = "scanner"
    campaign_id: U32 | None = None
    coupon_id: CouponId | None = None
    key_id: U32 | None = None
    other_store_id: Id | None = Field(
        default=None, description="holder of the coupon, for already_redeemed_elsewhere"
    )
    token_fingerprint: Fingerprint | None = None
    staff_id: Id | None = None


class StaffLoginPayload(Frozen):
    """A shopping guide logged in at a device; later redemptions there are attributed to them."""

    staff_id: Id
    source: Literal["badge", "pos"] = "badge"


class StaffLogoutPayload(Frozen):
    """Attribution to `staff_id` ended: explicit logout, timeout, or another guide's login."""

    staff_id: Id
    reason: Literal["logout", "timeout", "replaced"]
    duration_s: float | None = Field(default=None, ge=0)


# --- GET /v1/config (business config, owned by the cloud) ---------------------------------


class CouponKeyInfo(Frozen):
    """One public key of a campaign; `active` marks the key new coupons are signed with."""

    key_id: U32
    public_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$", description="raw, b64url")]
    active: bool


class CampaignPolicy(Frozen):
    """What a store needs to redeem a campaign's coupons offline."""

    campaign_id: U32
    name: Short
    currency: Currency
    max_offline_value: U32 = Field(description="largest coupon value redeemable offline")
    valid_from: AwareDatetime
    valid_to: AwareDatetime
    redeemable_here: bool = Field(description="the campaign's store scope includes this store")
    keys: list[CouponKeyInfo]


class CouponConfig(Frozen):
    """The coupon section of the business config."""

    campaigns: list[CampaignPolicy] = []
    reserve_timeout_ms: int = Field(default=300, ge=1, le=10_000)


class BusinessConfig(Frozen):
    """GET /v1/config body; `version` is the strong ETag, a hash of everything else.

    Each top-level section has one consumer in the agent, handed it only when it changed.
    `settings_version` numbers the admin-written settings (protocol.settings) it was built
    from: 0 when none was ever written.
    """

    version: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    store_id: Id
    coupons: CouponConfig
    settings_version: Version = 0
    receipt: ReceiptSettings = ReceiptSettings()
    scan: ScanRules = ScanRules()
    devices: dict[Id, DeviceSettings] = {}


# --- POST /v1/coupons/reserve ------------------------------------------------------------


class ReserveRequest(Frozen):
    """Claim single use of a coupon online; resending the same `redemption_id` is safe."""

    coupon_id: CouponId
    campaign_id: U32
    redemption_id: Id


class ReserveResponse(Frozen):
    """200 reserved / not_required, or 409 already_redeemed with the holder's `store_id`."""

    status: Literal["reserved", "not_required", "already_redeemed"]
    coupon_id: CouponId
    store_id: Id | None = None
    reserved_at: AwareDatetime | None = None
