"""GS1 element strings and Digital Link URIs, table-driven (devices.md §1.3).

Covers the common AIs only; an unknown AI is an error, never a guess. A maintained library
(biip) can replace this module behind the same two functions.
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

GS = "\x1d"  # FNC1 as transmitted by scanners (devices.md §1.3)


class GS1Error(ValueError):
    """The data is not valid GS1; the message says where and why."""


@dataclass(frozen=True, slots=True)
class AISpec:
    """How long an AI and its value are; `fixed` values need no FNC1 after them."""

    ai_len: int
    max_len: int
    fixed: bool
    numeric: bool


def _n(length: int, ai_len: int = 2) -> AISpec:
    return AISpec(ai_len, length, fixed=True, numeric=True)


def _nv(max_len: int, ai_len: int = 2) -> AISpec:
    return AISpec(ai_len, max_len, fixed=False, numeric=True)


def _xv(max_len: int, ai_len: int = 2) -> AISpec:
    return AISpec(ai_len, max_len, fixed=False, numeric=False)


# Keyed by the AI's leading digits; a 3-digit key with ai_len 4 is a family like 310n, where
# n is the decimal-point position. Formats from the GS1 General Specifications §3.2.
AIS: dict[str, AISpec] = {
    "00": _n(18),  # SSCC
    "01": _n(14),  # GTIN
    "02": _n(14),  # GTIN of contained items
    "10": _xv(20),  # batch/lot
    "11": _n(6),  # production date YYMMDD
    "12": _n(6),  # due date
    "13": _n(6),  # packaging date
    "15": _n(6),  # best before
    "16": _n(6),  # sell by
    "17": _n(6),  # expiry (day 00 = last day of the month)
    "20": _n(2),  # variant
    "21": _xv(20),  # serial
    "22": _xv(20),  # consumer product variant
    "240": _xv(30, 3),
    "241": _xv(30, 3),
    "250": _xv(30, 3),
    "251": _xv(30, 3),
    "30": _nv(8),  # variable count
    "37": _nv(8),  # count of trade items
    **{str(family): _n(6, 4) for family in range(310, 317)},  # metric trade measures
    **{str(family): _n(6, 4) for family in range(320, 330)},  # imperial trade measures
    **{str(family): _n(6, 4) for family in range(330, 338)},  # logistic measures
    "390": _nv(15, 4),  # amount payable
    "391": _nv(18, 4),  # amount payable with ISO currency
    "392": _nv(15, 4),  # price
    "393": _nv(18, 4),  # price with ISO currency
    "400": _xv(30, 3),  # order number
    "401": _xv(30, 3),  # GINC
    "402": _n(17, 3),  # GSIN
    **{str(ai): _n(13, 3) for ai in range(410, 418)},  # GLNs
    "420": _xv(20, 3),  # ship-to postal code
    "422": _n(3, 3),  # country of origin
    "7003": _n(10, 4),  # expiry date and time
    "8004": _xv(30, 4),  # GIAI
    "8005": _n(6, 4),  # price per unit
    "8020": _xv(25, 4),  # payment slip reference
    "8200": _xv(70, 4),  # product URL
    "90": _xv(30),  # internal
    **{str(ai): _xv(90) for ai in range(91, 100)},  # company internal
}

_CHECKED = frozenset({"00", "01", "02", "402"})  # values ending in a mod-10 check digit
_DATES = frozenset({"11", "12", "13", "15", "16", "17"})
_DIGITS = re.compile(r"[0-9]+")


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 check digit for the digits before it (weights 3,1,… from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def check_digit_ok(digits: str) -> bool:
    """True if the last digit is the GS1 check digit of the others."""
    return bool(_DIGITS.fullmatch(digits)) and int(digits[-1]) == gtin_check_digit(digits[:-1])


def lookup(data: str, pos: int = 0) -> AISpec | None:
    """The spec of the AI starting at `pos`, or None if it is not in the table."""
    for size in (2, 3, 4):
        spec = AIS.get(data[pos : pos + size])
        if spec is not None:
            return spec
    return None


def parse_element_strings(data: str) -> dict[str, str]:
    """AI → value of `data` (GS separates variable fields); raise GS1Error naming the position."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == GS:  # leading FNC1, or one after a fixed field: both are allowed
            pos += 1
            continue
        spec = lookup(data, pos)
        ai = data[pos : pos + spec.ai_len] if spec else ""
        if spec is None or not _DIGITS.fullmatch(ai):
            raise GS1Error(f"unknown AI at position {pos}: {data[pos : pos + 4]!r}")
        pos += spec.ai_len
        if spec.fixed:
            value = data[pos : pos + spec.max_len]
            if len(value) != spec.max_len or GS in value:
                raise GS1Error(f"AI ({ai}) needs {spec.max_len} characters")
        else:
            end = data.find(GS, pos)
            value = data[pos : end if end != -1 else len(data)]
            if not value or len(value) > spec.max_len:
                raise GS1Error(f"AI ({ai}) needs 1 to {spec.max_len} characters, got {len(value)}")
        pos += len(value)
        fields[ai] = _validated(ai, spec, value, fields)
    if not fields:
        raise GS1Error("no element strings")
    return fields


def parse_digital_link(url: str) -> dict[str, str] | None:
    """AI → value of a GS1 Digital Link URI (…/01/<gtin>/10/<lot>?17=…), None if not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    start = next((i for i, s in enumerate(segments) if s in ("00", "01", "414", "8004")), None)
    if start is None or (len(segments) - start) % 2:
        return None
    pairs = list(zip(segments[start::2], segments[start + 1 :: 2], strict=True))
    for item in parts.query.split("&"):
        key, _, value = item.partition("=")
        if key in AIS or (len(key) == 4 and key[:3] in AIS):
            pairs.append((key, unquote(value)))
    fields: dict[str, str] = {}
    for ai, value in pairs:
        spec = lookup(ai)
        if spec is None or spec.ai_len != len(ai):
            raise GS1Error(f"unknown AI in Digital Link: {ai!r}")
        if ai == "01" and len(value) in (8, 12, 13):
            value = value.zfill(14)  # Digital Link allows short GTINs, zero-padded to 14
        if (spec.fixed and len(value) != spec.max_len) or not 0 < len(value) <= spec.max_len:
            raise GS1Error(f"AI ({ai}) has a value of bad length {len(value)}")
        fields[ai] = _validated(ai, spec, value, fields)
    return fields


def _validated(ai: str, spec: AISpec, value: str, seen: dict[str, str]) -> str:
    if ai in seen:
        raise GS1Error(f"AI ({ai}) appears twice")
    if spec.numeric and not _DIGITS.fullmatch(value):
        raise GS1Error(f"AI ({ai}) must be numeric")
    if not spec.numeric and not value.isprintable():
        raise GS1Error(f"AI ({ai}) contains non-printable characters")
    if ai in _CHECKED and not check_digit_ok(value):
        raise GS1Error(f"bad check digit in AI ({ai})")
    if ai in _DATES and not (1 <= int(value[2:4]) <= 12 and int(value[4:6]) <= 31):
        raise GS1Error(f"AI ({ai}) is not a YYMMDD date")
    return value
