"""decode_frame: exact raw bytes, AIM split, UTF-8 and control bytes, then routing's reasons."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ScanSection
from agent.devices.scanner.decode import MAX_RAW_BYTES, decode_frame
from agent.devices.scanner.framer import Frame
from protocol.constants import MAX_RAW_B64_LEN, MAX_TEXT_LEN
from protocol.events import ScanPayload


def decode(raw: bytes, overlong: bool = False) -> ScanPayload:
    return decode_frame(Frame(raw, overlong))


@pytest.mark.parametrize(
    ("raw", "symbology", "text"),
    [
        (b"]E04006381333931", "EAN-13", "4006381333931"),
        (b"]E0036000291452", "UPC-A", "036000291452"),
        (b"]E001234505", "UPC-E", "01234505"),
        (b"]E496385074", "EAN-8", "96385074"),
        (b"]E3400638133393112", "EAN-13 with add-on", "400638133393112"),
        (b"]I110012345678902", "ITF-14", "10012345678902"),
        (b"4006381333931", None, "4006381333931"),  # AIM ids off
        (b"96385074", None, "96385074"),
        (b"\x024006381333931", None, "4006381333931"),  # STX-framed scanner
    ],
)
def test_gtins_with_a_valid_check_digit_are_products(
    raw: bytes, symbology: str | None, text: str
) -> None:
    payload = decode(raw)
    assert payload.classification == "product"
    assert (payload.symbology, payload.text) == (symbology, text)
    assert payload.reason is None
    assert payload.decode_error is None
    assert payload.raw == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"]E04006381333932", "bad check digit: EAN-13 4006381333932 should end in 1"),
        (b"4006381333930", "bad check digit: EAN-13 4006381333930 should end in 1"),
        (b"]E496385071", "bad check digit: EAN-8 96385071 should end in 4"),
        (b"]E0ABC", "not a GTIN: 3 chars after ]E0"),
    ],
)
def test_bad_gtins_say_why(raw: bytes, reason: str) -> None:
    payload = decode(raw)
    assert payload.classification == "unrecognised"
    assert payload.reason == reason


def test_gs1_128_element_strings_are_parsed() -> None:
    payload = decode(b"]C101095011015300031725010110ABC123\x1d21XYZ")
    assert payload.classification == "product"
    assert payload.symbology == "GS1-128"
    assert payload.gs1 == {"01": "09501101530003", "17": "250101", "10": "ABC123", "21": "XYZ"}
    assert payload.decode_error is None  # GS is data, not a stray control character
    assert payload.text == "01095011015300031725010110ABC123\x1d21XYZ"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x1d0109501101530003\x1d10LOT7",  # FNC1 sent as a leading GS, no AIM id
        b"0109501101530003" + b"10LOT7\x1d",  # AI data with a separator, no AIM id
        b"]d20109501101530003\x1d10LOT7",
        b"]e00109501101530003\x1d10LOT7",
    ],
)
def test_gs1_is_recognised_from_the_aim_id_or_a_leading_ai_with_gs(raw: bytes) -> None:
    payload = decode(raw)
    assert payload.classification == "product"
    assert payload.gs1 == {"01": "09501101530003", "10": "LOT7"}


def test_gs1_four_digit_measure_ais() -> None:
    payload = decode(b"]C10109501101530003310300150015250101")
    assert payload.gs1 == {"01": "09501101530003", "3103": "001500", "15": "250101"}


def test_gs1_digital_link_in_a_gs1_qr_code() -> None:
    payload = decode(b"]Q3https://id.gs1.org/01/09506000134352/10/ABC?17=261231")
    assert payload.classification == "product"
    assert payload.symbology == "GS1 QR Code"
    assert payload.gs1 == {"01": "09506000134352", "10": "ABC", "17": "261231"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"]C10412345", "GS1: unknown AI at position 0: '0412'"),
        (
            b"]C10109501101530004",
            "GS1: AI (01): Invalid GTIN check digit for '09501101530004': Expected 3, got 4.",
        ),
        (b"]C1010950110153", "GS1: AI (01) '0950110153' does not fit N2+N14"),
        (
            b"]C110" + b"X" * 21,
            "GS1: unknown AI at position 22: 'X' after variable-length AI (10): GS missing?",
        ),
        (b"]C10109501101530003\x1d\x1d10", "GS1: AI (10) '' does not fit N2+X..20"),
        (b"]C11725133110AB", "GS1: AI (17) '25133110AB' does not fit N2+N6"),
        (
            b"]C13712AB",
            "GS1: unknown AI at position 4: 'AB' after variable-length AI (37): GS missing?",
        ),
        (b"]C10109501101530003" + b"0109501101530003", "GS1: AI (01) appears twice"),
        (
            b"]Q3https://example.com/coupon/1",
            "URL is not a GS1 Digital Link: Expected a primary identifier in the path, "
            "got '/coupon/1'.",
        ),
    ],
)
def test_gs1_errors_are_precise(raw: bytes, reason: str) -> None:
    payload = decode(raw)
    assert payload.classification == "unrecognised"
    assert payload.reason == reason
    assert payload.gs1 is None


def test_a_qr_url_that_is_neither_coupon_nor_digital_link_says_so() -> None:
    payload = decode(b"]Q1https://shop.example.com/c/ABCD2345")
    assert payload.classification == "unrecognised"
    assert payload.reason == (
        "URL is not a GS1 Digital Link: Expected a primary identifier in the path, "
        "got '/c/ABCD2345'."
    )
    assert payload.symbology == "QR Code"
    assert payload.text == "https://shop.example.com/c/ABCD2345"


def test_the_scan_section_routes_coupons_and_staff_badges() -> None:
    config = ScanSection(coupon_prefixes=["https://shop.example.com/c/"])
    assert decode_frame(Frame(b"]Q1https://shop.example.com/c/X"), config).classification == (
        "coupon"
    )
    assert decode_frame(Frame(b"]C0STAFF-004711")).classification == "staff_badge"


def test_invalid_utf8_names_the_byte_offset_in_the_raw_frame() -> None:
    raw = b"]E0\xff\xfe12"
    payload = decode(raw)
    assert payload.classification == "unrecognised"
    assert payload.reason == "invalid utf-8"
    assert payload.decode_error == "invalid utf-8 at byte 3: invalid start byte"
    assert payload.text == "\ufffd\ufffd12"
    assert base64.b64decode(payload.raw_b64) == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"4006381333931\t", "control character 0x09 at byte 13"),  # TAB suffix not configured
        (b"]E0400638\x041333931", "control character 0x04 at byte 9"),
        (b"AB\x00\x7fC", "control character 0x00 at byte 2 (and 1 more)"),
        (b"\x02ABC\x03", "control character 0x03 at byte 4"),  # ETX not configured as suffix
    ],
)
def test_control_characters_other_than_gs_are_flagged(raw: bytes, message: str) -> None:
    payload = decode(raw)
    assert payload.classification == "unrecognised"
    assert payload.decode_error == message
    assert payload.reason == message


@pytest.mark.parametrize(
    ("raw", "overlong", "reason"),
    [
        (b"", False, "empty frame"),
        (b"]E0", False, "no data after AIM id ]E0"),
        (b"4" * 16, True, "overlong frame: only the first 16 bytes kept"),
        (b"hello", False, "unknown format: no AIM id, 5 chars"),
        (b"]C0ABC-123", False, "unknown format: ]C0, 7 chars"),
        (b"12345", False, "unknown format: no AIM id, 5 chars"),
    ],
)
def test_unrecognised_frames_have_a_reason(raw: bytes, overlong: bool, reason: str) -> None:
    payload = decode(raw, overlong)
    assert payload.classification == "unrecognised"
    assert payload.reason == reason


def test_a_frame_bigger_than_the_wire_allows_is_truncated_and_says_so() -> None:
    payload = decode(b"A" * 20_000)
    assert len(payload.raw) == MAX_RAW_BYTES
    assert len(payload.raw_b64) <= MAX_RAW_B64_LEN
    assert len(payload.text) == MAX_TEXT_LEN
    assert payload.decode_error == f"raw truncated from 20000 to {MAX_RAW_BYTES} bytes for the wire"


@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_decode_to_a_valid_payload_that_keeps_the_raw_bytes(
    raw: bytes, overlong: bool
) -> None:
    payload = decode(raw, overlong)
    assert payload.raw == raw
    assert ScanPayload.model_validate_json(payload.model_dump_json()) == payload
    if payload.classification == "unrecognised":
        assert payload.reason
