"""protocol/mirror_api: every message round-trips, bad ones are refused, the mDNS type is legal."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from zeroconf._utils.name import service_type_name

from protocol.mirror_api import (
    EVENT_TYPES,
    SERVICE_TYPE,
    STREAM_ADAPTER,
    Ack,
    CouponClaim,
    DisplayRequest,
    Hello,
    ItemRef,
    MirrorAdvert,
    MirrorInfo,
    Photo,
    SessionEnd,
    SessionStart,
    ShowCoupon,
    ShowMessage,
    Tryon,
)

AT = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
BASE: dict[str, Any] = {"counter": 7, "msg_id": "m7", "at": AT, "session_id": "s-1"}

MESSAGES = [
    Hello(mirror_id="MM-1", epoch="e1", oldest=1, latest=0),
    SessionStart(**BASE, trigger="rfid", staff_id="guide-3"),
    SessionEnd(**BASE, duration_s=42.5),
    Tryon(**BASE, item=ItemRef(barcode="4006381333931")),
    Tryon(**BASE, item=ItemRef(epc="3034257BF7194E4000001A85")),
    Photo(**BASE, item=ItemRef(epc="3034257BF7194E4000001A85"), media_id="p-1"),
    CouponClaim(**BASE, token="SPRING-10-ABCD", campaign_hint="spring"),
]


def _wire(**fields: Any) -> str:
    message = {"counter": 3, "msg_id": "m3", "at": "2026-03-01T10:30:00+01:00", "session_id": "s"}
    return json.dumps(message | fields)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.type)
def test_stream_messages_round_trip_through_json(message: Any) -> None:
    text = message.model_dump_json()
    assert json.loads(text)["type"] == message.type
    assert STREAM_ADAPTER.validate_json(text) == message


def test_a_vendor_message_parses_with_its_timezone_and_lowercase_epc() -> None:
    message = STREAM_ADAPTER.validate_json(
        _wire(type="tryon", item={"epc": "3034257bf7194e4000001a85"})
    )
    assert isinstance(message, Tryon)
    assert message.item.epc == "3034257BF7194E4000001A85"
    assert message.at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        _wire(type="tryon", item={"barcode": "123", "epc": "3034257BF7194E4000001A85"}),
        _wire(type="tryon", item={}),
        _wire(type="tryon", item={"epc": "3034257BF7194E4000001A8"}),  # 92 bits: not whole words
        _wire(type="tryon", item={"barcode": "a\nb"}),
        _wire(type="tryon", item={"barcode": "x" * 129}),
        _wire(type="size_request", sku="123"),  # unknown type
        _wire(type="coupon_claim", token=""),
        _wire(type="session_end", duration_s=-1),
        _wire(type="session_start", colour="red"),  # unknown field
        _wire(type="session_start", counter=0),
        _wire(type="session_start", at="2026-03-01T10:30:00"),  # no timezone
        _wire(type="session_start", session_id="has space"),
        json.dumps({"type": "hello", "mirror_id": "MM-1", "epoch": "e", "oldest": 0, "latest": 0}),
        json.dumps({"counter": 1}),  # no type at all
        "[1, 2]",
        "{not json",
    ],
)
def test_bad_stream_messages_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        STREAM_ADAPTER.validate_json(text)


def test_event_types_are_the_five_recorded_kinds() -> None:
    assert set(EVENT_TYPES) == {"session_start", "session_end", "tryon", "photo", "coupon_claim"}


def test_ack_and_info_round_trip() -> None:
    assert Ack.model_validate_json(Ack(counter=9).model_dump_json()) == Ack(counter=9)
    info = MirrorInfo(id="MM-1", model="Mirror X", api_version=1, firmware="2.0.1")
    assert MirrorInfo.model_validate_json(info.model_dump_json()) == info


@pytest.mark.parametrize(
    "request_",
    [
        DisplayRequest(request_id="r1", content=ShowCoupon(qr_payload="https://x/c/1"), ttl_s=30),
        DisplayRequest(
            request_id="r2", content=ShowMessage(text="Your size is on its way"), ttl_s=10,
            session_id="s-1",
        ),
    ],
)  # fmt: skip
def test_display_requests_round_trip(request_: DisplayRequest) -> None:
    assert DisplayRequest.model_validate_json(request_.model_dump_json()) == request_


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "r", "content": {"type": "coupon", "qr_payload": "x"}, "ttl_s": 0},
        {"request_id": "r", "content": {"type": "coupon", "qr_payload": "x"}, "ttl_s": 3601},
        {"request_id": "r", "content": {"type": "coupon", "qr_payload": ""}, "ttl_s": 5},
        {"request_id": "r", "content": {"type": "video", "url": "x"}, "ttl_s": 5},
        {"request_id": "r", "content": {"type": "message", "text": "x" * 257}, "ttl_s": 5},
        {"content": {"type": "message", "text": "hi"}, "ttl_s": 5},
    ],
)
def test_bad_display_requests_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DisplayRequest.model_validate(body)


def test_txt_record_round_trips_and_ignores_foreign_keys() -> None:
    advert = MirrorAdvert(id="MM-1", model="Mirror X", api=1)
    properties: dict[str, str | None] = {**advert.properties(), "vendor": "acme", "flag": None}
    assert next(iter(advert.properties())) == "txtvers"
    assert MirrorAdvert.from_properties(properties) == advert
    with pytest.raises(ValidationError):
        MirrorAdvert.from_properties({"model": "no id"})
    with pytest.raises(ValidationError):
        MirrorAdvert.from_properties({"id": "bad id!"})


def test_service_type_is_a_legal_dns_sd_type() -> None:
    # RFC 6335: at most 15 bytes; python-zeroconf refuses to register or browse longer ones.
    assert service_type_name(SERVICE_TYPE) == SERVICE_TYPE
