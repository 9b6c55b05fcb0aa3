"""Smart-mirror events as recorded by the agent (the mirror's own LAN API lives in mirror_api)."""

from typing import Annotated, Literal

from pydantic import Field

from protocol.base import Frozen, Id, Short, Text


class MirrorSessionPayload(Frozen):
    """A shopper started or ended a session at a mirror."""

    session_id: Id
    phase: Literal["start", "end"]
    duration_s: float | None = Field(default=None, ge=0)
    staff_id: Id | None = None


class MirrorTryonPayload(Frozen):
    """An item tried on, identified by barcode or RFID EPC."""

    session_id: Id
    item_code: Annotated[str, Field(min_length=1, max_length=128)]
    item_kind: Literal["barcode", "epc"]
    photo: bool = False


class MirrorCouponClaimedPayload(Frozen):
    """A coupon claimed at the mirror; `token` goes through the coupon flow like a scan."""

    session_id: Id
    token: Text
    campaign_hint: Short | None = None
