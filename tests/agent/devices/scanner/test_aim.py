"""AIM symbology identifiers: splitting, names, and which ones carry GS1 element strings."""

import pytest

from agent.devices.scanner.aim import CODE_NAMES, ID_NAMES, is_gs1, split_aim, symbology_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"]E04006381333931", ("]E0", b"4006381333931")),
        (b"]Q1https://example.com/c/X", ("]Q1", b"https://example.com/c/X")),
        (b"]C1", ("]C1", b"")),
        (b"4006381333931", (None, b"4006381333931")),  # AIM ids off (Datalogic default)
        (b"]", (None, b"]")),
        (b"]E", (None, b"]E")),
        (b"]1A0123", (None, b"]1A0123")),  # the code character is a letter
        (b"]E\x000123", (None, b"]E\x000123")),
        (b"", (None, b"")),
    ],
)
def test_split_aim(raw: bytes, expected: tuple[str | None, bytes]) -> None:
    assert split_aim(raw) == expected


@pytest.mark.parametrize(
    ("aim_id", "name"),
    [
        ("]E0", "EAN-13"),
        ("]E4", "EAN-8"),
        ("]E3", "EAN-13 with add-on"),
        ("]C0", "Code 128"),
        ("]C1", "GS1-128"),
        ("]A0", "Code 39"),
        ("]A4", "Code 39"),  # modifier = options, still Code 39
        ("]I0", "ITF"),
        ("]I1", "ITF-14"),
        ("]Q1", "QR Code"),
        ("]Q3", "GS1 QR Code"),
        ("]d1", "Data Matrix"),
        ("]d2", "GS1 DataMatrix"),
        ("]e0", "GS1 DataBar"),
        ("]z0", "Aztec"),
        ("]y0", None),
        ("]E", None),
        (None, None),
    ],
)
def test_symbology_name(aim_id: str | None, name: str | None) -> None:
    assert symbology_name(aim_id) == name


@pytest.mark.parametrize(
    ("aim_id", "gs1"),
    [
        ("]C1", True),
        ("]d2", True),
        ("]Q3", True),
        ("]e0", True),
        ("]C0", False),
        ("]C2", False),
        ("]Q1", False),
        ("]d1", False),
        ("]E0", False),
        (None, False),
    ],
)
def test_is_gs1(aim_id: str | None, gs1: bool) -> None:
    assert is_gs1(aim_id) is gs1


def test_every_specific_id_belongs_to_a_known_code_character() -> None:
    assert {aim_id[1] for aim_id in ID_NAMES} <= set(CODE_NAMES)
