"""route(): product, coupon, staff badge, or unrecognised with a reason the console can show."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ScanSection
from agent.devices.scanner.routing import RULES, Route, route

DEFAULT = ScanSection()
GS = "\x1d"


@pytest.mark.parametrize(
    ("text", "aim_id", "symbology"),
    [
        ("4006381333931", "]E0", "EAN-13"),
        ("036000291452", "]E0", "UPC-A"),
        ("01234505", "]E0", "UPC-E"),
        ("96385074", "]E4", None),
        ("400638133393112", "]E3", None),  # EAN-13 + 2-digit add-on
        ("10012345678902", "]I1", None),  # ITF-14
        ("4006381333931", None, None),  # AIM ids off: no symbology is guessed
        ("036000291452", None, None),
        ("01234505", None, None),  # UPC-E without AIM id
    ],
)
def test_valid_gtins_are_products(text: str, aim_id: str | None, symbology: str | None) -> None:
    assert route(text, aim_id, DEFAULT) == Route("product", symbology=symbology)


@pytest.mark.parametrize(
    ("text", "aim_id", "reason"),
    [
        ("4006381333932", "]E0", "bad check digit: EAN-13 4006381333932 should end in 1"),
        ("036000291453", "]E0", "bad check digit: UPC-A 036000291453 should end in 2"),
        ("01234506", "]E0", "bad check digit: UPC-E 01234506 should end in 5"),
        ("96385071", "]E4", "bad check digit: EAN-8 96385071 should end in 4"),
        ("4006381333930", None, "bad check digit: EAN-13 4006381333930 should end in 1"),
        ("ABC", "]E0", "not a GTIN: 3 chars after ]E0"),
        ("12345", "]E4", "not a GTIN: 5 chars after ]E4"),
    ],
)
def test_bad_gtins_name_the_expected_check_digit(
    text: str, aim_id: str | None, reason: str
) -> None:
    assert route(text, aim_id, DEFAULT) == Route("unrecognised", reason)


@pytest.mark.parametrize(
    ("text", "aim_id"),
    [
        (f"01095011015300031725010110ABC123{GS}21XYZ", "]C1"),  # GS1-128
        (f"01095011015300031725010110ABC123{GS}21XYZ", "]d2"),  # GS1 DataMatrix
        (f"01095011015300031725010110ABC123{GS}21XYZ", "]Q3"),  # GS1 QR
        (f"{GS}01095011015300031725010110ABC123{GS}21XYZ", None),  # FNC1 as a leading GS
        (f"01095011015300031725010110ABC123{GS}21XYZ", None),  # AI data with a separator
    ],
)
def test_gs1_element_strings_are_products_with_fields(text: str, aim_id: str | None) -> None:
    result = route(text, aim_id, DEFAULT)
    assert result.classification == "product"
    assert result.gs1 == {"01": "09501101530003", "17": "250101", "10": "ABC123", "21": "XYZ"}


def test_gs1_four_digit_ais() -> None:
    result = route("0109501101530003310300150015250101", "]C1", DEFAULT)
    assert result.gs1 == {"01": "09501101530003", "3103": "001500", "15": "250101"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0412345", "GS1: unknown AI at position 0: '0412'"),
        (
            "0109501101530004",
            "GS1: AI (01): Invalid GTIN check digit for '09501101530004': Expected 3, got 4.",
        ),
        ("010950110153", "GS1: AI (01) '0950110153' does not fit N2+N14"),
        ("1725133110AB", "GS1: AI (17) '25133110AB' does not fit N2+N6"),
        (f"0109501101530003{GS}{GS}10", "GS1: AI (10) '' does not fit N2+X..20"),
        (
            "10" + "X" * 21,
            "GS1: unknown AI at position 22: 'X' after variable-length AI (10): GS missing?",
        ),
        ("0109501101530003" * 2, "GS1: AI (01) appears twice"),
    ],
)
def test_gs1_faults_say_where_and_why(text: str, reason: str) -> None:
    assert route(text, "]C1", DEFAULT) == Route("unrecognised", reason)


def test_gs1_impossible_dates_are_refused() -> None:
    result = route("0109501101530003170231", "]C1", DEFAULT)  # 31 February
    assert result.classification == "unrecognised"
    assert (result.reason or "").startswith("GS1: AI (17)")


@pytest.mark.parametrize("aim_id", ["]Q1", "]Q3", None])
def test_gs1_digital_link_urls_are_products(aim_id: str | None) -> None:
    result = route("https://id.gs1.org/01/09506000134352/10/ABC?17=261231", aim_id, DEFAULT)
    assert result == Route("product", gs1={"01": "09506000134352", "10": "ABC", "17": "261231"})


def test_a_digital_link_with_a_bad_gtin_check_digit_is_refused() -> None:
    result = route("https://brand.example.com/01/09506000134353", "]Q1", DEFAULT)
    assert result.reason == (
        "GS1: AI (01): Invalid GTIN check digit for '09506000134353': Expected 2, got 3."
    )


def test_a_url_that_is_no_digital_link_says_so() -> None:
    result = route("https://shop.example.com/c/ABCD2345", "]Q1", DEFAULT)
    assert result == Route(
        "unrecognised",
        "URL is not a GS1 Digital Link: Expected a primary identifier in the path, "
        "got '/c/ABCD2345'.",
    )


@pytest.mark.parametrize(
    ("text", "aim_id", "config", "classification"),
    [
        ("SE1.eyJjIjoiMSJ9.sig", "]Q1", DEFAULT, "coupon"),
        ("SE1.x", None, DEFAULT, "coupon"),
        ("SE2.x", None, DEFAULT, "unrecognised"),
        ("SE2.x", None, ScanSection(coupon_prefixes=["SE1.", "SE2."]), "coupon"),
        ("https://c.example.com/SE1", "]Q1", ScanSection(coupon_prefixes=["https://c."]), "coupon"),
        ("STAFF-1234", "]C0", DEFAULT, "staff_badge"),
        ("STAFF-123", "]C0", DEFAULT, "unrecognised"),  # too few digits
        ("xSTAFF-1234", None, DEFAULT, "unrecognised"),  # the whole text must match
        ("EMP42", None, ScanSection(staff_badge_pattern=r"EMP[0-9]+"), "staff_badge"),
        ("4006381333931", "]E0", ScanSection(coupon_prefixes=["400"]), "coupon"),  # store first
    ],
)
def test_coupons_and_staff_badges_follow_the_scan_section(
    text: str, aim_id: str | None, config: ScanSection, classification: str
) -> None:
    assert route(text, aim_id, config).classification == classification


@pytest.mark.parametrize(
    ("text", "aim_id", "reason"),
    [
        ("", None, "empty scan"),
        ("40063\ufffd1333931", None, "undecodable characters (U+FFFD): keyboard layout "
         "mismatch, dropped keystrokes or bytes that are not UTF-8"),
        ("4006381333931\t", None, "control character 0x09 at position 13"),
        ("A" * 8193, None, "overlong: 8193 chars, at most 8192"),
        ("hello", None, "unknown format: no AIM id, 5 chars"),
        ("ABC-123", "]C0", "unknown format: ]C0, 7 chars"),
        ("4006381333931", "]C0", "unknown format: ]C0, 13 chars"),  # Code 128 is no EAN
        ("àà&\"è'_ç&&", None, "unknown format: no AIM id, 10 chars"),  # US digits read as fr
    ],
)  # fmt: skip
def test_everything_else_is_unrecognised_with_a_reason(
    text: str, aim_id: str | None, reason: str
) -> None:
    assert route(text, aim_id, DEFAULT) == Route("unrecognised", reason)


def test_rule_names_are_unique_and_the_last_catches_all() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert names[-1] == "unknown"


@given(st.text(max_size=120), st.sampled_from([None, "]E0", "]C1", "]Q1", "]Q3", "]d2", "]E3"]))
def test_any_text_gets_a_route_and_every_refusal_a_reason(text: str, aim_id: str | None) -> None:
    result = route(text, aim_id, DEFAULT)
    assert (result.classification == "unrecognised") == (result.reason is not None)
    assert result.reason is None or len(result.reason) > 0
