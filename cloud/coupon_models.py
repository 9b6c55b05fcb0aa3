"""Bodies of the coupon admin API (console and scripts); agent-facing ones are in protocol/."""

from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from protocol.base import Frozen, Id
from protocol.coupon_events import U32, Currency
from protocol.coupons import MAX_STORES

# A campaign's scope is delivered per store (`redeemable_here`), so it may be long; a
# coupon's own scope travels inside the token, so it is at most MAX_STORES.
MAX_CAMPAIGN_STORES = 100_000
MAX_ISSUE_COUNT = 10_000  # per request: bounds one transaction and one response body
# Token times are u32 unix seconds (docs/COUPONS.md "Layout"): nothing past 2106-02-07.
LATEST_TIMESTAMP = 2**32 - 1


class CampaignCreate(Frozen):
    """POST /api/campaigns: `stores` None runs the campaign in every store."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    currency: Currency
    max_offline_value: U32 = Field(
        default=0, description="largest coupon value (minor units) a store may redeem offline"
    )
    valid_from: AwareDatetime
    valid_to: AwareDatetime
    stores: Annotated[list[Id], Field(min_length=1, max_length=MAX_CAMPAIGN_STORES)] | None = None

    @model_validator(mode="after")
    def _window(self) -> "CampaignCreate":
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if self.valid_from.timestamp() < 0 or self.valid_to.timestamp() > LATEST_TIMESTAMP:
            raise ValueError("validity must lie within 1970-01-01 .. 2106-02-07 (u32 seconds)")
        return self


class IssueRequest(Frozen):
    """POST /api/campaigns/{id}/coupons: `value` in minor units; times default to the campaign's."""

    count: int = Field(ge=1, le=MAX_ISSUE_COUNT)
    value: U32
    stores: Annotated[list[Id], Field(min_length=1, max_length=MAX_STORES)] | None = None
    single_use: bool = True
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
