"""Receipt and coupon templates: validated data in, ESC/POS bytes out (pure)."""

import unicodedata
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.devices.printer import escpos
from agent.devices.printer.errors import EncodeError
from agent.devices.printer.escpos import Align, Hri, Style, Symbology

# Font A is 12 dots wide: 576 printable dots on 80 mm paper = 48 columns, 384 on 58 mm = 32.
COLUMNS_80MM = 48
COLUMNS_58MM = 32
FEED_BEFORE_CUT = 4  # lines between the last print and the blade (~ head-to-cutter distance)

BIG = Style(bold=True, width=2, height=2, align=Align.CENTER)

Name = Annotated[str, Field(min_length=1, max_length=64)]
Line = Annotated[str, Field(max_length=256)]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReceiptItem(_Data):
    """One sold line: `qty` × `unit_price_cents`."""

    name: Name
    qty: int = Field(default=1, ge=1, le=9999)
    unit_price_cents: int = Field(ge=0, le=10**9)


class ReceiptData(_Data):
    """A sales receipt; `receipt_no` is also printed as a CODE128 barcode."""

    store_name: Name
    receipt_no: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[\x21-\x7e]+$")]
    printed_at: Line = ""
    items: list[ReceiptItem] = Field(min_length=1, max_length=200)
    currency: Annotated[str, Field(max_length=8)] = "CNY"
    footer: Line = "Thank you!"
    footer_zh: Line = "谢谢惠顾 欢迎再次光临"
    open_drawer: bool = False
    columns: int = Field(default=COLUMNS_80MM, ge=24, le=64)

    @property
    def total_cents(self) -> int:
        """Sum of every line."""
        return sum(item.qty * item.unit_price_cents for item in self.items)


class CouponData(_Data):
    """A coupon voucher: `token` goes in the QR the store's scanner redeems."""

    title: Name
    title_zh: Line = "优惠券"
    value: Annotated[str, Field(min_length=1, max_length=32)]
    token: Annotated[str, Field(min_length=1, max_length=1024)]
    code: Annotated[str, Field(max_length=32, pattern=r"^[\x20-\x7e]*$")] = ""
    valid_until: Line = ""
    terms: Annotated[str, Field(max_length=1024)] = ""
    store_name: Line = ""
    columns: int = Field(default=COLUMNS_80MM, ge=24, le=64)


def receipt(data: ReceiptData) -> bytes:
    """A sales receipt: header, items, total, Chinese footer, receipt barcode, partial cut."""
    cols = data.columns
    out = [escpos.init()]
    if data.open_drawer:
        out.append(escpos.drawer_kick())
    out.append(
        escpos.line(data.store_name, Style(bold=True, width=2, height=2, align=Align.CENTER))
    )
    out.append(escpos.line(f"Receipt {data.receipt_no}", Style(align=Align.CENTER)))
    if data.printed_at:
        out.append(escpos.line(data.printed_at, Style(align=Align.CENTER)))
    out.append(escpos.line("-" * cols))
    for item in data.items:
        label = f"{item.qty} x {item.name}" if item.qty != 1 else item.name
        out.append(escpos.line(two_columns(label, _money(item.qty * item.unit_price_cents), cols)))
    out.append(escpos.line("-" * cols))
    total = two_columns(f"TOTAL {data.currency}", _money(data.total_cents), cols // 2)
    out.append(escpos.line(total, Style(bold=True, width=2, height=2)))
    if data.footer:
        out.append(escpos.line(data.footer, Style(align=Align.CENTER)))
    if data.footer_zh:
        out.append(escpos.line(data.footer_zh, Style(align=Align.CENTER)))
    out.append(escpos.align(Align.CENTER))
    out.append(escpos.barcode(Symbology.CODE128, data.receipt_no, hri=Hri.BELOW, height=60))
    out.append(escpos.align(Align.LEFT))
    out.append(escpos.cut(partial=True, feed_lines=FEED_BEFORE_CUT))
    return b"".join(out)


def coupon(data: CouponData) -> bytes:
    """A coupon voucher: title, Chinese title, value, QR of the token, code, terms, cut."""
    center = Style(align=Align.CENTER)
    out = [escpos.init()]
    if data.store_name:
        out.append(escpos.line(data.store_name, center))
    out.append(escpos.line(data.title, BIG))
    if data.title_zh:
        out.append(escpos.line(data.title_zh, BIG))
    out.append(escpos.line(data.value, Style(bold=True, width=2, height=1, align=Align.CENTER)))
    out.append(escpos.align(Align.CENTER))
    out.append(escpos.qr(data.token, module=6, ec="M"))
    out.append(escpos.align(Align.LEFT))
    if data.code:
        out.append(escpos.line(data.code, center))
    if data.valid_until:
        out.append(escpos.line(f"Valid until {data.valid_until}", center))
    out.extend(escpos.line(part) for part in wrap(data.terms, data.columns))
    out.append(escpos.cut(partial=True, feed_lines=FEED_BEFORE_CUT))
    return b"".join(out)


# Template name → (data model, renderer). The cloud sends a name and fields; nothing else runs.
TEMPLATES: dict[str, tuple[type[_Data], Callable[[Any], bytes]]] = {
    "receipt": (ReceiptData, receipt),
    "coupon": (CouponData, coupon),
}


def render(template: str, fields: Mapping[str, Any]) -> bytes:
    """Validate `fields` for `template` and encode it; EncodeError names what is wrong."""
    try:
        model, renderer = TEMPLATES[template]
    except KeyError:
        raise EncodeError(f"unknown template {template!r}") from None
    try:
        data = model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(data)"
        raise EncodeError(f"{template}: {where}: {first['msg']}") from exc
    return renderer(data)


COPY_TITLE = "*** COPY ***"
COPY_LINE = "Reprint: the first print may have come out"


def copy_banner() -> bytes:
    """What a marked reprint starts with, so staff and shoppers can tell it is a second copy."""
    # Why it was reprinted goes to the console (print.completed note); the paper says "copy".
    return b"".join(
        (
            escpos.init(),
            escpos.line(COPY_TITLE, BIG),
            escpos.line(COPY_LINE, Style(align=Align.CENTER)),
            escpos.feed(1),
        )
    )


def display_width(value: str) -> int:
    """Printed columns: wide/fullwidth (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in value)


def two_columns(left: str, right: str, columns: int) -> str:
    """`left` padded so `right` ends at the last column; `left` is clipped if it must be."""
    room = columns - display_width(right) - 1
    clipped = _clip(left, max(room, 0))
    return clipped + " " * (columns - display_width(clipped) - display_width(right)) + right


def wrap(value: str, columns: int) -> list[str]:
    """Greedy word wrap by display width; words longer than a line are split."""
    lines: list[str] = []
    for paragraph in value.splitlines():
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if display_width(candidate) <= columns:
                current = candidate
                continue
            if current:
                lines.append(current)
            while display_width(word) > columns:
                head = _clip(word, columns)
                lines.append(head)
                word = word[len(head) :]
            current = word
        if current:
            lines.append(current)
    return lines


def _clip(value: str, columns: int) -> str:
    out, used = "", 0
    for char in value:
        used += display_width(char)
        if used > columns:
            break
        out += char
    return out


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
