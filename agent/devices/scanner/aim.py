"""AIM symbology identifiers (ISO/IEC 15424): `]` + code character + modifier (devices.md §1.2)."""

import re

# Name per code character, whatever the modifier (ISO/IEC 15424 Table 1, as listed in
# devices.md §1.2 and biip's symbology.py).
CODE_NAMES: dict[str, str] = {
    "A": "Code 39",
    "C": "Code 128",
    "E": "EAN/UPC",
    "F": "Codabar",
    "G": "Code 93",
    "I": "ITF",
    "L": "PDF417",
    "Q": "QR Code",
    "X": "Other",
    "d": "Data Matrix",
    "e": "GS1 DataBar",
    "z": "Aztec",
}

# Identifiers whose modifier changes what the data is (devices.md §1.2).
ID_NAMES: dict[str, str] = {
    "]E0": "EAN-13",  # also UPC-A/UPC-E sent as 13 digits
    "]E1": "EAN 2-digit add-on",
    "]E2": "EAN 5-digit add-on",
    "]E3": "EAN-13 with add-on",
    "]E4": "EAN-8",
    "]C1": "GS1-128",
    "]I1": "ITF-14",
    "]d2": "GS1 DataMatrix",
    "]Q1": "QR Code",
    "]Q3": "GS1 QR Code",
}

# Leading FNC1 is not transmitted; it becomes these modifiers, and the data is GS1 element
# strings with GS (0x1D) for later FNC1s (devices.md §1.3; GS1 General Specifications 5.1.2).
GS1_ELEMENT_STRING_IDS: frozenset[str] = frozenset({"]C1", "]d2", "]Q3", "]e0"})

# Identifiers whose data is a bare GTIN checked by its mod-10 digit (biip GS1Symbology.with_gtin).
GTIN_IDS: frozenset[str] = frozenset({"]E0", "]E3", "]E4", "]I1"})

# Modifiers are one character in practice ("]A0".."]A7", "]Q6"); ISO allows digits and letters.
_AIM = re.compile(rb"\][A-Za-z][0-9A-Za-z]")


def split_aim(raw: bytes) -> tuple[str | None, bytes]:
    """(AIM id or None, the data after it); data without a well-formed prefix is returned whole."""
    if _AIM.match(raw):
        return raw[:3].decode("ascii"), raw[3:]
    return None, raw


def symbology_name(aim_id: str | None) -> str | None:
    """Human name of the symbology ("EAN-13", "GS1-128"…), or None if unknown."""
    if aim_id is None or len(aim_id) != 3:
        return None
    return ID_NAMES.get(aim_id) or CODE_NAMES.get(aim_id[1])


def is_gs1(aim_id: str | None) -> bool:
    """True if the identifier announces GS1 element strings (FNC1 in first position)."""
    return aim_id in GS1_ELEMENT_STRING_IDS
