"""Scan routing: product, coupon or staff badge, or a precise reason why not; a table of rules.

GS1 element strings, GS1 Digital Link URLs and GTIN/UPC check digits are biip's job
(devices.md §1.3); coupon prefixes and the staff badge pattern come from `[scan]`. The console
shows the reasons so a store whose staff scan the wrong thing can be told what they scanned.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from biip import BiipException, ParseConfig
from biip.checksums import gs1_standard_check_digit
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from biip.gtin import Gtin
from biip.upc import Upc

from agent.config import ScanSection
from agent.devices.scanner import aim
from protocol.constants import MAX_TEXT_LEN
from protocol.events import ScanClass

GS = "\x1d"  # FNC1 in GS1 data: the one control character that is data (devices.md §1.3)
_BIIP = ParseConfig(separator_chars=(GS,))
_DIGITS = re.compile(r"[0-9]+")
_URL = re.compile(r"https?://", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1c\x1e\x1f\x7f]")

_GTIN_NAMES: dict[int, str] = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}
# ]E0 covers EAN-13, UPC-A and UPC-E; the digit count tells which (EAN-8 comes as ]E4).
_E0_NAMES: dict[int, str] = {8: "UPC-E", 12: "UPC-A", 13: "EAN-13"}
# ]E3 is EAN/UPC followed by a 2- or 5-digit add-on: total length → length of the add-on.
_ADDON_LEN: dict[int, int] = {10: 2, 13: 5, 14: 2, 15: 2, 17: 5, 18: 5}


class Route(NamedTuple):
    """Where a scan goes; `symbology` refines the AIM name (]E0 with 12 digits is UPC-A)."""

    classification: ScanClass
    reason: str | None = None
    gs1: dict[str, str] | None = None
    symbology: str | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """What every rule looks at."""

    text: str
    aim_id: str | None
    config: ScanSection


@dataclass(frozen=True, slots=True)
class Rule:
    """The first rule whose `applies` holds decides the route."""

    name: str
    applies: Callable[[Scan], bool]
    decide: Callable[[Scan], Route]


def route(text: str, aim_id: str | None, config: ScanSection) -> Route:
    """Classify decoded text (after its AIM id); never raises on any input."""
    scan = Scan(text, aim_id, config)
    for rule in RULES:
        if rule.applies(scan):
            return rule.decide(scan)
    raise AssertionError("the last rule applies to everything")  # pragma: no cover


def _unrecognised(reason: str) -> Route:
    return Route("unrecognised", reason)


def _control(scan: Scan) -> Route:
    found = _CONTROL.search(scan.text)
    assert found is not None
    return _unrecognised(f"control character 0x{ord(found[0]):02X} at position {found.start()}")


def _gtin(scan: Scan) -> Route:
    text, aim_id = scan.text, scan.aim_id
    digits = text
    if aim_id == "]E3" and len(text) in _ADDON_LEN:
        digits = text[: -_ADDON_LEN[len(text)]]  # the add-on carries no check digit
    if not _DIGITS.fullmatch(digits) or len(digits) not in _GTIN_NAMES:
        return _unrecognised(f"not a GTIN: {len(text)} chars after {aim_id or 'no AIM id'}")
    symbology = _E0_NAMES.get(len(digits)) if aim_id == "]E0" else None
    upce = len(digits) == 8 and digits[0] in "01" and aim_id in (None, "]E0", "]E3")
    if _parses(Gtin.parse, digits) or (upce and _parses(Upc.parse, digits)):
        return Route("product", symbology=symbology)
    if upce and symbology == "UPC-E":
        name, expected = "UPC-E", Upc.parse(digits[:7]).check_digit  # biip computes it
    else:
        name, expected = _GTIN_NAMES[len(digits)], gs1_standard_check_digit(digits[:-1])
    return _unrecognised(f"bad check digit: {name} {digits} should end in {expected}")


def _parses(parse: Callable[[str], object], digits: str) -> bool:
    try:
        parse(digits)
    except BiipException:
        return False
    return True


def _element_strings(scan: Scan) -> Route:
    """GS1 element strings, walked with biip's AI table so a fault can name its position."""
    text, pos = scan.text, 0
    elements = GS1ElementStrings()
    while pos < len(text):
        if text[pos] == GS:  # leading FNC1, or a separator after any field (GS1 GS 7.8.6)
            pos += 1
            continue
        rest = text[pos:]
        try:
            ai = GS1ApplicationIdentifier.extract(rest)
        except BiipException:
            hint = ""
            if elements and ".." in elements[-1].ai.format:  # e.g. N2+X..20
                hint = f" after variable-length AI ({elements[-1].ai.ai}): GS missing?"
            return _unrecognised(f"GS1: unknown AI at position {pos}: {rest[:4]!r}{hint}")
        try:
            element = GS1ElementString.extract(rest, config=_BIIP)
        except (BiipException, ValueError) as exc:
            field = rest.split(GS, 1)[0]
            if re.match(ai.pattern.removesuffix("$"), field) is None:
                shown = field[len(ai.ai) :][:24]
                return _unrecognised(f"GS1: AI ({ai.ai}) {shown!r} does not fit {ai.format}")
            return _unrecognised(f"GS1: AI ({ai.ai}): {exc}")  # e.g. 31 February
        elements.append(element)
        pos += len(element)
    return _gs1_fields(elements)


def _digital_link(scan: Scan) -> Route:
    try:
        link = GS1DigitalLinkURI.parse(scan.text, config=_BIIP)
    except (BiipException, ValueError) as exc:
        return _unrecognised(f"URL is not a GS1 Digital Link: {exc}")
    return _gs1_fields(link.element_strings)


def _gs1_fields(elements: GS1ElementStrings) -> Route:
    """AI → value, after the checks biip reports but does not raise on (check digits)."""
    fields: dict[str, str] = {}
    for element in elements:
        ai = element.ai.ai
        error = element.gtin_error or element.sscc_error or element.gln_error
        if error:
            return _unrecognised(f"GS1: AI ({ai}): {error}")
        if ai in fields:
            return _unrecognised(f"GS1: AI ({ai}) appears twice")
        fields[ai] = element.value
    if not fields:
        return _unrecognised("GS1: no element strings")
    return Route("product", gs1=fields)


def _is_url(scan: Scan) -> bool:
    return _URL.match(scan.text) is not None


def _gs_separated(scan: Scan) -> bool:
    """No AIM id, but FNC1 sent as a leading GS, or AI data with GS separators."""
    text = scan.text
    return scan.aim_id is None and (text[0] == GS or (GS in text and text[0].isdigit()))


def _gtin_sized(scan: Scan) -> bool:
    """No AIM id, but only digits, as many as a GTIN has."""
    return (
        scan.aim_id is None
        and bool(_DIGITS.fullmatch(scan.text))
        and (len(scan.text) in _GTIN_NAMES)
    )


def _unknown(scan: Scan) -> Route:
    return _unrecognised(f"unknown format: {scan.aim_id or 'no AIM id'}, {len(scan.text)} chars")


# Order matters: input faults first, then the store's own formats (a coupon QR must never be
# taken for a URL), then GS1 by AIM id, then guesses for scanners with AIM ids turned off.
RULES: tuple[Rule, ...] = (
    Rule("empty", lambda s: not s.text, lambda s: _unrecognised("empty scan")),
    Rule(
        "undecodable",
        lambda s: "\ufffd" in s.text,
        lambda s: _unrecognised(
            "undecodable characters (U+FFFD): keyboard layout mismatch, dropped keystrokes "
            "or bytes that are not UTF-8"
        ),
    ),
    Rule("control", lambda s: _CONTROL.search(s.text) is not None, _control),
    Rule(
        "overlong",
        lambda s: len(s.text) > MAX_TEXT_LEN,
        lambda s: _unrecognised(f"overlong: {len(s.text)} chars, at most {MAX_TEXT_LEN}"),
    ),
    Rule(
        "coupon",
        lambda s: s.text.startswith(tuple(s.config.coupon_prefixes)),
        lambda s: Route("coupon"),
    ),
    Rule(
        "staff_badge",
        lambda s: re.fullmatch(s.config.staff_badge_pattern, s.text) is not None,
        lambda s: Route("staff_badge"),
    ),
    Rule("digital_link", _is_url, _digital_link),
    Rule("gs1_by_aim", lambda s: aim.is_gs1(s.aim_id), _element_strings),
    Rule("gtin_by_aim", lambda s: s.aim_id in aim.GTIN_IDS, _gtin),
    Rule("gs1_by_gs", _gs_separated, _element_strings),
    Rule("gtin_by_length", _gtin_sized, _gtin),
    Rule("unknown", lambda s: True, _unknown),
)
