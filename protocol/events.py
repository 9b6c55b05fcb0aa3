"""The event envelope and its kind-tagged payloads (DESIGN.md "Events")."""

import base64
from datetime import datetime
from typing import Annotated, Literal, TypeAlias
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, field_validator

from protocol.base import Frozen as _Frozen
from protocol.base import Id, Text
from protocol.constants import MAX_RAW_B64_LEN, SCHEMA_VERSION, SUPPORTED_SCHEMAS
from protocol.coupon_events import (
    CouponRedeemedPayload,
    CouponRejectedPayload,
    StaffLoginPayload,
    StaffLogoutPayload,
)
from protocol.mirror import (
    MirrorCouponClaimedPayload,
    MirrorSessionPayload,
    MirrorTryonPayload,
)
from protocol.printing import PrintCompletedPayload, PrintFailedPayload

ScanClass: TypeAlias = Literal["product", "coupon", "staff_badge", "unrecognised"]


class ScanPayload(_Frozen):
    """One decoded frame from a scanner; `raw_b64` keeps the exact bytes received."""

    raw_b64: Annotated[str, Field(max_length=MAX_RAW_B64_LEN)]
    text: Text
    aim_id: Annotated[str, Field(max_length=3)] | None = None
    symbology: Annotated[str, Field(max_length=32)] | None = None
    gs1: dict[Annotated[str, Field(max_length=4)], Text] | None = None
    classification: ScanClass = "unrecognised"
    reason: Annotated[str, Field(max_length=256)] | None = None
    decode_error: Annotated[str, Field(max_length=256)] | None = None

    @property
    def raw(self) -> bytes:
        """The frame's bytes exactly as the device sent them."""
        return base64.b64decode(self.raw_b64)


DeviceState: TypeAlias = Literal["connecting", "online", "degraded", "offline"]


class DeviceStatusPayload(_Frozen):
    """A device's state changed; `condition` names why (connected, disconnected, paper_out…)."""

    state: DeviceState
    condition: Annotated[str, Field(max_length=64)]
    detail: Annotated[str, Field(max_length=512)] | None = None


class _Envelope(_Frozen):
    event_id: UUID
    agent_id: Id
    store_id: Id
    seq: int = Field(ge=1)
    device_id: Id
    occurred_at: AwareDatetime
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")

    @field_validator("event_id")
    @classmethod
    def _must_be_v7(cls, value: UUID) -> UUID:
        if value.version != 7:
            raise ValueError("event_id must be a UUIDv7")
        return value

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMAS:
            raise ValueError(f"unsupported schema version {value}")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        offset = value.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError("occurred_at must be UTC")
        return value


class ScanEvent(_Envelope):
    """A scan: every frame, recognised or not, so the console can diagnose stores."""

    kind: Literal["scan"] = "scan"
    payload: ScanPayload


class DeviceStatusEvent(_Envelope):
    """A device changed state; emitted only on change."""

    kind: Literal["device.status"] = "device.status"
    payload: DeviceStatusPayload


class PrintCompletedEvent(_Envelope):
    """A print job finished on the printer."""

    kind: Literal["print.completed"] = "print.completed"
    payload: PrintCompletedPayload


class PrintFailedEvent(_Envelope):
    """A print job was given up on."""

    kind: Literal["print.failed"] = "print.failed"
    payload: PrintFailedPayload


class MirrorSessionEvent(_Envelope):
    """A mirror session started or ended."""

    kind: Literal["mirror.session"] = "mirror.session"
    payload: MirrorSessionPayload


class MirrorTryonEvent(_Envelope):
    """An item was tried on at a mirror."""

    kind: Literal["mirror.tryon"] = "mirror.tryon"
    payload: MirrorTryonPayload


class MirrorCouponClaimedEvent(_Envelope):
    """A coupon was claimed at a mirror."""

    kind: Literal["mirror.coupon_claimed"] = "mirror.coupon_claimed"
    payload: MirrorCouponClaimedPayload


class CouponRedeemedEvent(_Envelope):
    """A coupon was redeemed in the store (never dropped by the disk policy)."""

    kind: Literal["coupon.redeemed"] = "coupon.redeemed"
    payload: CouponRedeemedPayload


class CouponRejectedEvent(_Envelope):
    """A coupon was refused, with the reason (never dropped by the disk policy)."""

    kind: Literal["coupon.rejected"] = "coupon.rejected"
    payload: CouponRejectedPayload


class StaffLoginEvent(_Envelope):
    """A shopping guide badged in at a device."""

    kind: Literal["staff.login"] = "staff.login"
    payload: StaffLoginPayload


class StaffLogoutEvent(_Envelope):
    """A shopping guide's attribution at a device ended."""

    kind: Literal["staff.logout"] = "staff.logout"
    payload: StaffLogoutPayload


EventModel: TypeAlias = (
    ScanEvent
    | DeviceStatusEvent
    | PrintCompletedEvent
    | PrintFailedEvent
    | MirrorSessionEvent
    | MirrorTryonEvent
    | MirrorCouponClaimedEvent
    | CouponRedeemedEvent
    | CouponRejectedEvent
    | StaffLoginEvent
    | StaffLogoutEvent
)
Event = Annotated[EventModel, Field(discriminator="kind")]
EVENT_ADAPTER: TypeAdapter[EventModel] = TypeAdapter(Event)

# Which kind tag a payload travels under; the agent builds envelopes from this table.
KIND_FOR_PAYLOAD: dict[type[BaseModel], str] = {
    model.model_fields["payload"].annotation: model.model_fields["kind"].default
    for model in EventModel.__args__
}
