"""The smart mirror's own LAN API, spoken by mirrors and the agent (docs/MIRRORS.md).

A mirror advertises SERVICE_TYPE over mDNS with TXT `txtvers`, `id`, `model`, `api`, and
serves `GET /info` (MirrorInfo), a WebSocket `GET /events?after=N&epoch=E` (a Hello, then
StreamMessages; the agent answers each recorded event with an Ack) and `POST /display`
(DisplayRequest → 200 DisplayAck, or 400 ApiError). No I/O here.
"""

from typing import Annotated, Final, Literal, TypeAlias

from pydantic import AfterValidator, AwareDatetime, Field, TypeAdapter, model_validator

from protocol.base import Frozen, Id, Short, Text

# RFC 6335 §5.1 caps a service name at 15 bytes ("storeedge-mirror" is 16, and python-zeroconf
# refuses to register or browse it), hence the shortened label.
SERVICE_TYPE: Final = "_storeedge-mir._tcp.local."
API_VERSION: Final = 1
SUPPORTED_API_VERSIONS: Final = frozenset({1})
TXT_VERSION: Final = "1"  # RFC 6763 §6.7: txtvers first, so the record can evolve
INFO_PATH: Final = "/info"
EVENTS_PATH: Final = "/events"
DISPLAY_PATH: Final = "/display"
# One stream message; a mirror event is a few hundred bytes, this leaves room for long tokens.
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_TTL_S: Final = 3600

# EPC Gen2 memory is read in 16-bit words: 96-bit SGTIN-96 (24 hex digits) up to 496 bits.
Epc = Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{4}){6,31}$"), AfterValidator(str.upper)]
# Decoded barcode text as a scanner would give it: printable ASCII, GS allowed for GS1 data.
Barcode = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x1d\x20-\x7e]+$")]
Token = Annotated[Text, Field(min_length=1)]


class ItemRef(Frozen):
    """The garment or product: exactly one of its barcode or its RFID EPC."""

    barcode: Barcode | None = None
    epc: Epc | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ItemRef":
        if (self.barcode is None) == (self.epc is None):
            raise ValueError("give exactly one of barcode or epc")
        return self


class _Event(Frozen):
    counter: int = Field(ge=1, description="+1 per event within an epoch; resume with ?after=")
    msg_id: Id
    at: AwareDatetime
    session_id: Id


class SessionStart(_Event):
    """A shopper stepped up to the mirror (or staff started a session for them)."""

    type: Literal["session_start"] = "session_start"
    trigger: Literal["presence", "touch", "rfid", "staff"] = "presence"
    staff_id: Id | None = None


class SessionEnd(_Event):
    """The session is over (shopper left or timed out)."""

    type: Literal["session_end"] = "session_end"
    duration_s: float | None = Field(default=None, ge=0)


class Tryon(_Event):
    """An item was brought to the mirror (RFID read) or selected on it (barcode)."""

    type: Literal["tryon"] = "tryon"
    item: ItemRef


class Photo(_Event):
    """The shopper took a photo wearing `item`; the image itself never leaves the mirror."""

    type: Literal["photo"] = "photo"
    item: ItemRef
    media_id: Id | None = None


class CouponClaim(_Event):
    """The shopper claimed a coupon at the mirror; `token` is redeemable like a scanned one."""

    type: Literal["coupon_claim"] = "coupon_claim"
    token: Token
    campaign_hint: Short | None = None


class Hello(Frozen):
    """First message of every stream: who is speaking and which counters it still holds."""

    type: Literal["hello"] = "hello"
    mirror_id: Id
    epoch: Id = Field(description="changes whenever the counter restarts (factory reset…)")
    oldest: int = Field(ge=1, description="oldest counter still replayable (latest+1 if none)")
    latest: int = Field(ge=0, description="last counter assigned (0 if none yet)")


MirrorEvent: TypeAlias = SessionStart | SessionEnd | Tryon | Photo | CouponClaim
StreamModel: TypeAlias = Hello | MirrorEvent
StreamMessage = Annotated[StreamModel, Field(discriminator="type")]
STREAM_ADAPTER: TypeAdapter[StreamModel] = TypeAdapter(StreamMessage)
EVENT_TYPES: Final = frozenset(m.model_fields["type"].default for m in MirrorEvent.__args__)


class Ack(Frozen):
    """Agent → mirror: every event up to `counter` is durably recorded (the mirror may trim)."""

    type: Literal["ack"] = "ack"
    counter: int = Field(ge=0)


class MirrorInfo(Frozen):
    """GET /info: the mirror's identity and the API version it speaks."""

    id: Id
    model: Short
    api_version: int = Field(ge=1)
    firmware: Short


class MirrorAdvert(Frozen):
    """The mDNS TXT record's meaning (keys other than these are ignored)."""

    id: Id
    model: Short = ""
    api: int = Field(default=API_VERSION, ge=1)

    def properties(self) -> dict[str, str]:
        """TXT properties to register, `txtvers` first (RFC 6763 §6.7)."""
        return {"txtvers": TXT_VERSION, "id": self.id, "model": self.model, "api": str(self.api)}

    @classmethod
    def from_properties(cls, properties: dict[str, str | None]) -> "MirrorAdvert":
        """Parse decoded TXT properties; raises pydantic.ValidationError if `id` is bad."""
        known = {k: v for k, v in properties.items() if k in cls.model_fields and v is not None}
        return cls.model_validate(known)


class ShowCoupon(Frozen):
    """Show a QR code the shopper scans with their phone to claim a coupon."""

    type: Literal["coupon"] = "coupon"
    qr_payload: Annotated[str, Field(min_length=1, max_length=1024)]
    caption: Short | None = None


class ShowMessage(Frozen):
    """Show a short line of text."""

    type: Literal["message"] = "message"
    text: Annotated[str, Field(min_length=1, max_length=256)]


class DisplayRequest(Frozen):
    """POST /display body; the same `request_id` twice shows once (retries are safe)."""

    request_id: Id
    content: Annotated[ShowCoupon | ShowMessage, Field(discriminator="type")]
    ttl_s: int = Field(ge=1, le=MAX_TTL_S)
    session_id: Id | None = None


class DisplayAck(Frozen):
    """200 answer to POST /display: the mirror is showing `request_id`."""

    request_id: Id


class ApiError(Frozen):
    """Body of every 4xx/5xx answer."""

    error: Short
