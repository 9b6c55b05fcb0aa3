"""The test page `test-print` sends: who printed it, when, and a QR the scanner can read back."""

import socket
from datetime import UTC, datetime

from agent.devices.printer import escpos
from agent.devices.printer.escpos import Align, Style

TEMPLATE = "test_page"
BIG = Style(bold=True, width=2, height=2, align=Align.CENTER)
CENTRE = Style(align=Align.CENTER)


def render_test_page(device_id: str, store_id: str | None, at: datetime | None = None) -> bytes:
    """ESC/POS bytes of one test page; its QR carries a text the store's scanner can read."""
    at = at or datetime.now(UTC)
    return b"".join(
        [
            escpos.init(),
            escpos.line("storeedge test page", BIG),
            escpos.line(f"printer {device_id}", CENTRE),
            escpos.line(f"store {store_id or '(not enrolled)'}", CENTRE),
            escpos.line(f"host {socket.gethostname()}", CENTRE),
            escpos.line(at.strftime("%Y-%m-%d %H:%M:%S UTC"), CENTRE),
            escpos.feed(1),
            escpos.align(Align.CENTER),
            escpos.qr(f"TEST-{device_id}-{at:%H%M%S}", module=5),
            escpos.align(Align.LEFT),
            escpos.feed(1),
            escpos.line("If you can read this, printing works.", CENTRE),
            escpos.cut(partial=True, feed_lines=4),
        ]
    )


def job_id_for(device_id: str, at: datetime | None = None) -> str:
    """A unique job id (a wire Id) for one test page of `device_id`."""
    at = at or datetime.now(UTC)
    return f"test-{at:%Y%m%dT%H%M%S%f}"[:64]
