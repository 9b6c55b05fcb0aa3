"""The ESC/POS encoder against the spec bytes in research/devices.md §2.1."""

import pytest

from agent.devices.printer import escpos
from agent.devices.printer.errors import EncodeError
from agent.devices.printer.escpos import Align, Hri, Style, Symbology

H = bytes.fromhex


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (escpos.init(), H("1b 40")),
        (escpos.bold(True), H("1b 45 01")),
        (escpos.bold(False), H("1b 45 00")),
        (escpos.underline(2), H("1b 2d 02")),
        (escpos.align(Align.CENTER), H("1b 61 01")),
        (escpos.align(Align.RIGHT), H("1b 61 02")),
        (escpos.size(2, 2), H("1d 21 11")),
        (escpos.size(1, 2), H("1d 21 01")),
        (escpos.size(8, 8), H("1d 21 77")),
        (escpos.code_page("cp858"), H("1b 74 13")),
        (escpos.chinese(True), H("1c 26")),
        (escpos.chinese(False), H("1c 2e")),
        (escpos.feed(3), H("1b 64 03")),
        (escpos.cut(), H("1d 56 00")),
        (escpos.cut(partial=True), H("1d 56 01")),
        (escpos.cut(feed_lines=4), H("1d 56 41 04")),
        (escpos.cut(partial=True, feed_lines=4), H("1d 56 42 04")),
        (escpos.drawer_kick(), H("1b 70 00 19 fa")),
        (escpos.drawer_kick(pin=5, on_ms=100, off_ms=100), H("1b 70 01 32 32")),
        (escpos.asb(0x0F), H("1d 61 0f")),
        (escpos.process_id(b"A1b~"), H("1d 28 48 06 00 30 30 41 31 62 7e")),
    ],
)
def test_command_bytes(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected


def test_qr_is_model_size_ec_store_print() -> None:
    data = "https://example.invalid/c/SPRING-10"
    store_len = len(data) + 3
    assert escpos.qr(data, module=6, ec="M") == b"".join(
        [
            H("1d 28 6b 04 00 31 41 32 00"),  # model 2
            H("1d 28 6b 03 00 31 43 06"),  # module size 6
            H("1d 28 6b 03 00 31 45 31"),  # EC level M
            H("1d 28 6b") + bytes([store_len % 256, store_len // 256]) + H("31 50 30"),
            data.encode(),
            H("1d 28 6b 03 00 31 51 30"),  # print
        ]
    )


def test_qr_length_past_255_uses_the_high_byte() -> None:
    store = escpos.qr("x" * 300, ec="H", model=1)
    assert H("1d 28 6b 04 00 31 41 31 00") in store
    assert H("1d 28 6b 03 00 31 45 33") in store
    assert H("1d 28 6b 2f 01 31 50 30") + b"x" * 300 in store  # 303 = 0x012f


def test_ean13_barcode_with_hri_below() -> None:
    assert escpos.barcode(Symbology.EAN13, "4006381333931") == b"".join(
        [H("1d 48 02"), H("1d 68 50"), H("1d 77 03"), H("1d 6b 43 0d"), b"4006381333931"]
    )


def test_code128_selects_set_b_and_escapes_braces() -> None:
    encoded = escpos.barcode(Symbology.CODE128, "R{1}", hri=Hri.ABOVE, height=60, module_width=2)
    assert encoded == b"".join(
        [H("1d 48 01"), H("1d 68 3c"), H("1d 77 02"), H("1d 6b 49 07"), b"{BR{{1}"]
    )


def test_chinese_text_is_gb18030_inside_fs_and() -> None:
    # devices.md §2.1, verified with python-escpos: "优惠券 10元" → d3 c5 bb dd c8 af 20 31 30 d4 aa
    assert escpos.text("优惠券 10元") == H("1c 26 d3 c5 bb dd c8 af 20 31 30 d4 aa 1c 2e")


def test_ascii_text_needs_no_code_page_and_latin_gets_one() -> None:
    assert escpos.text("Total 12.00") == b"Total 12.00"
    assert escpos.text("Café", codepage="cp858") == H("1b 74 13") + b"Caf\x82"


def test_styled_line_resets_after_itself() -> None:
    line = escpos.line("TOTAL", Style(bold=True, width=2, height=2, align=Align.RIGHT))
    assert line == b"".join(
        [
            H("1b 45 01 1b 2d 00 1d 21 11 1b 61 02"),
            b"TOTAL\n",
            H("1b 45 00 1b 2d 00 1d 21 00 1b 61 00"),
        ]
    )
    assert escpos.line("plain") == b"plain\n"


@pytest.mark.parametrize(
    "bad",
    [
        lambda: escpos.text("evil\x1b@"),  # a control byte would become a command
        lambda: escpos.text("line\nbreak"),
        lambda: escpos.text("😀"),  # 4-byte GB18030: not printable
        lambda: escpos.barcode(Symbology.EAN13, "4006381333932"),  # wrong check digit
        lambda: escpos.barcode(Symbology.EAN13, "40063813339"),
        lambda: escpos.barcode(Symbology.CODE128, "é"),
        lambda: escpos.barcode(Symbology.CODE128, "x" * 254),
        lambda: escpos.qr(""),
        lambda: escpos.qr("x" * 7090),
        lambda: escpos.qr("x", ec="Z"),
        lambda: escpos.size(9, 1),
        lambda: escpos.feed(256),
        lambda: escpos.drawer_kick(pin=3),
        lambda: escpos.code_page("cp999"),
        lambda: escpos.process_id(b"\x00abc"),
    ],
)
def test_bad_content_is_an_encode_error(bad: object) -> None:
    with pytest.raises(EncodeError):
        bad()  # type: ignore[operator]
