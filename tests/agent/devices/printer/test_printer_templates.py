"""Templates render to ESC/POS the emulator's own parser reads back as the same receipt."""

from typing import Any

import pytest

from agent.devices.printer import templates
from agent.devices.printer.errors import EncodeError
from hardware.emulators.escpos_parse import EscPosParser
from hardware.emulators.receipt import Cut, DrawerKick, QrCode, Receipt, TextLine

RECEIPT: dict[str, Any] = {
    "store_name": "STORE 42",
    "receipt_no": "R-000123",
    "printed_at": "2025-05-01 10:31",
    "items": [
        {"name": "Coffee", "qty": 2, "unit_price_cents": 350},
        {"name": "茶叶蛋", "unit_price_cents": 150},
    ],
    "open_drawer": True,
}
COUPON: dict[str, Any] = {
    "title": "SPRING SALE",
    "value": "10 CNY OFF",
    "token": "https://shop.example.com/c/SPRING-10?sig=AbC_123",
    "code": "SPRING-10",
    "valid_until": "2025-06-30",
    "terms": "One per customer. 不可与其他优惠同时使用。",
    "store_name": "Store 42",
}


def parse(data: bytes, chunk: int = 0) -> Receipt:
    parser = EscPosParser()
    step = chunk or len(data)
    signals = [s for i in range(0, len(data), step) for s in parser.feed(data[i : i + step])]
    receipts = [s for s in signals if isinstance(s, Receipt)]
    assert len(receipts) == 1
    return receipts[0]


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_receipt_round_trip(chunk: int) -> None:
    receipt = parse(templates.render("receipt", RECEIPT), chunk)
    assert receipt.lines == [
        "STORE 42",
        "Receipt R-000123",
        "2025-05-01 10:31",
        "-" * 48,
        "2 x Coffee" + " " * 34 + "7.00",
        "茶叶蛋" + " " * 38 + "1.50",  # CJK characters take two columns each
        "-" * 48,
        "TOTAL CNY" + " " * 11 + "8.50",
        "Thank you!",
        "谢谢惠顾 欢迎再次光临",
    ]
    header = receipt.elements[1]
    assert isinstance(header, TextLine)
    assert (header.style.bold, header.style.width, header.style.align) == (True, 2, "center")
    assert [(b.symbology, b.data, b.hri) for b in receipt.barcodes] == [("CODE128", "R-000123", 2)]
    assert isinstance(receipt.elements[0], DrawerKick)
    assert receipt.cut == Cut(partial=True)


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_coupon_round_trip_with_qr_of_the_token(chunk: int) -> None:
    receipt = parse(templates.render("coupon", COUPON), chunk)
    assert receipt.qr_codes == [QrCode(COUPON["token"].encode(), module=6, ec="M", model=2)]
    assert receipt.lines == [
        "Store 42",
        "SPRING SALE",
        "优惠券",
        "10 CNY OFF",
        "SPRING-10",
        "Valid until 2025-06-30",
        "One per customer. 不可与其他优惠同时使用。",
    ]
    assert receipt.cut == Cut(partial=True)


@pytest.mark.parametrize(
    ("template", "fields", "message"),
    [
        ("receipt", {**RECEIPT, "items": []}, "items"),
        ("receipt", {**RECEIPT, "receipt_no": "has space"}, "receipt_no"),
        ("receipt", {**RECEIPT, "store_name": "evil\x1b@"}, "control character"),
        ("coupon", {**COUPON, "token": ""}, "token"),
        ("coupon", {**COUPON, "title": "🎉 SALE"}, "cannot be printed"),
        ("coupon", {**COUPON, "surprise": 1}, "surprise"),
        ("nope", {}, "unknown template"),
    ],
)
def test_bad_template_data_is_an_encode_error(
    template: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(EncodeError, match=message):
        templates.render(template, fields)


def test_layout_helpers_count_cjk_as_two_columns() -> None:
    assert templates.display_width("优惠券 10") == 9
    assert templates.two_columns("优惠券优惠券", "9.99", 12) == "优惠券  9.99"
    assert templates.wrap("aaa bbb 优惠券优惠券", 6) == ["aaa", "bbb", "优惠券", "优惠券"]
