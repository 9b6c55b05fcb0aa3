"""What the emulated printer put on paper, and how to show it: text for logs, PNG for eyes."""

import functools
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont


@dataclass(frozen=True, slots=True)
class TextStyle:
    """Character and line settings in force when a line started."""

    bold: bool = False
    underline: int = 0
    width: int = 1
    height: int = 1
    align: str = "left"


@dataclass(frozen=True, slots=True)
class TextLine:
    """One printed line of decoded text."""

    text: str
    style: TextStyle = TextStyle()


@dataclass(frozen=True, slots=True)
class Barcode:
    """A 1D barcode: symbology name, data as sent (CODE128 set selector removed), HRI position."""

    symbology: str
    data: str
    hri: int


@dataclass(frozen=True, slots=True)
class QrCode:
    """A printed QR symbol and the settings it was stored with."""

    data: bytes
    module: int
    ec: str
    model: int


@dataclass(frozen=True, slots=True)
class Cut:
    """The knife: a receipt ends here."""

    partial: bool


@dataclass(frozen=True, slots=True)
class DrawerKick:
    """A pulse on the cash-drawer connector."""

    pin: int
    on_ms: int
    off_ms: int


@dataclass(frozen=True, slots=True)
class Feed:
    """Blank lines fed."""

    lines: int


@dataclass(frozen=True, slots=True)
class Image:
    """A raster image (GS v 0), kept only by size."""

    width_dots: int
    height_dots: int


Element = TextLine | Barcode | QrCode | Cut | DrawerKick | Feed | Image


@dataclass
class Receipt:
    """Everything printed up to and including a cut."""

    elements: list[Element] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """The text lines, in order."""
        return [e.text for e in self.elements if isinstance(e, TextLine)]

    @property
    def barcodes(self) -> list[Barcode]:
        """The 1D barcodes, in order."""
        return [e for e in self.elements if isinstance(e, Barcode)]

    @property
    def qr_codes(self) -> list[QrCode]:
        """The QR symbols, in order."""
        return [e for e in self.elements if isinstance(e, QrCode)]

    @property
    def cut(self) -> Cut | None:
        """The cut that ended this receipt, if it was cut."""
        last = self.elements[-1] if self.elements else None
        return last if isinstance(last, Cut) else None


# Paper: Font A is 12×24 dots, 48 columns on 80 mm (576 dots at 203 dpi).
COLUMNS = 48
CELL_W, CELL_H = 12, 24
MARGIN = 16
# Tried in order for the PNG; without a CJK font, Chinese renders as boxes (text output is exact).
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


def to_text(receipt: Receipt, columns: int = COLUMNS) -> str:
    """The receipt as a terminal would show it: aligned lines, codes as [bracketed] labels."""
    return "\n".join(_text_rows(receipt, columns)) + "\n"


def to_png(receipt: Receipt, path: Path, columns: int = COLUMNS) -> Path:
    """Draw the receipt on a paper-white PNG at `path`; QR and barcodes as labelled boxes."""
    rows = _png_rows(receipt, columns)
    width = columns * CELL_W + 2 * MARGIN
    height = sum(h for _, h in rows) + 2 * MARGIN
    image = PILImage.new("L", (width, max(height, 2 * MARGIN + CELL_H)), 255)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    for row, row_h in rows:
        row(draw, y)
        y += row_h
    image.save(path, "PNG")
    return path


def _display_width(value: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in value)


def _place(value: str, align: str, columns: int, scale: int = 1) -> str:
    room = columns - _display_width(value) * scale
    pad = {"left": 0, "center": room // 2, "right": room}.get(align, 0)
    return " " * max(pad, 0) + value


def _label(element: Element) -> str:
    if isinstance(element, Barcode):
        return f"[{element.symbology} {element.data}]"
    if isinstance(element, QrCode):
        return f"[QR {element.data.decode('utf-8', errors='replace')}]"
    if isinstance(element, DrawerKick):
        return f"[drawer kick: pin {element.pin}, {element.on_ms} ms]"
    if isinstance(element, Image):
        return f"[image {element.width_dots}x{element.height_dots}]"
    if isinstance(element, Cut):
        return ("- " * 6 if element.partial else "=" * 12) + " cut"
    return ""


def _text_rows(receipt: Receipt, columns: int) -> list[str]:
    rows: list[str] = []
    for element in receipt.elements:
        if isinstance(element, TextLine):
            rows.append(_place(element.text, element.style.align, columns, element.style.width))
        elif isinstance(element, Feed):
            rows.extend([""] * min(element.lines, 3))
        else:
            rows.append(_place(_label(element), "center", columns))
    return rows


_Row = tuple[Callable[[ImageDraw.ImageDraw, int], None], int]


def _png_rows(receipt: Receipt, columns: int) -> list[_Row]:
    rows: list[_Row] = []

    def text_row(value: str, align: str = "left", scale: int = 1) -> _Row:
        font = _font(scale)
        pad = len(_place(value, align, columns, scale)) - len(value)

        def draw_text(draw: ImageDraw.ImageDraw, y: int) -> None:
            draw.text((MARGIN + pad * CELL_W, y), value, fill=0, font=font)

        return draw_text, CELL_H * scale

    def box_row(label: str, box_h: int) -> _Row:
        def draw_box(draw: ImageDraw.ImageDraw, y: int) -> None:
            left = MARGIN + (columns * CELL_W - box_h) // 2
            draw.rectangle((left, y + 4, left + box_h, y + box_h), outline=0, width=3)
            label_row, _ = text_row(label, "center")
            label_row(draw, y + box_h + 4)

        return draw_box, box_h + CELL_H + 8

    for element in receipt.elements:
        if isinstance(element, TextLine):
            style = element.style
            scale = max(1, min(style.width, style.height, 4))
            rows.append(text_row(element.text, style.align, scale))
        elif isinstance(element, QrCode):
            rows.append(box_row(_label(element), 6 * CELL_W))
        elif isinstance(element, Barcode):
            rows.append(box_row(_label(element), 3 * CELL_W))
        elif isinstance(element, Feed):
            rows.append((lambda draw, y: None, CELL_H * min(element.lines, 3)))
        else:
            rows.append(text_row(_label(element), "center"))
    return rows


@functools.cache
def _font(scale: int = 1) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size=(CELL_H - 4) * scale)
    return ImageFont.load_default()
