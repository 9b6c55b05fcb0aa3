"""The printer emulator: parsing, real-time status, faults, power, TCP, pty, PNG and CLI."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from hardware.emulators.escpos_parse import EscPosParser
from hardware.emulators.printer import PrinterEmulator, StatusMode
from hardware.emulators.printer_core import PrinterCore, PrinterState
from hardware.emulators.receipt import (
    Barcode,
    Cut,
    DrawerKick,
    QrCode,
    Receipt,
    TextLine,
    TextStyle,
    to_png,
    to_text,
)

ROOT = Path(__file__).resolve().parents[2]
H = bytes.fromhex
# Hand-built ESC/POS, independent of the agent's encoder (devices.md §2.1).
JOB = b"".join(
    [
        H("1b 40"),  # init
        H("1b 70 00 19 fa"),  # drawer kick, pin 2, 50 ms
        H("1b 61 01 1b 45 01 1d 21 11"),  # center, bold, 2x2
        b"STORE 42\n",
        H("1b 45 00 1d 21 00 1b 61 00"),
        H("1c 26 d3 c5 bb dd c8 af 20 31 30 d4 aa 1c 2e 0a"),  # 优惠券 10元 in Chinese mode
        H("1b 74 13") + b"Caf\x82\n",  # cp858
        H("1d 48 02 1d 6b 43 0d") + b"4006381333931",  # EAN-13, function B, HRI below
        H("1d 6b 04") + b"ABC-1\x00",  # CODE39, function A (NUL-terminated)
        H("1d 6b 49 07") + b"{BR{{1}",  # CODE128 set B, escaped brace
        H("1d 28 6b 04 00 31 41 32 00 1d 28 6b 03 00 31 43 05 1d 28 6b 03 00 31 45 33"),
        H("1d 28 6b 08 00 31 50 30") + b"TOKEN",  # store 5 bytes (pL = 5 + 3)
        H("1d 28 6b 03 00 31 51 30"),  # print QR
        H("1b 64 02"),
        H("1d 56 42 03"),  # feed 3, partial cut
    ]
)
EXPECTED_ELEMENTS = [
    DrawerKick(pin=2, on_ms=50, off_ms=500),
    TextLine("STORE 42", TextStyle(bold=True, width=2, height=2, align="center")),
    TextLine("优惠券 10元"),
    TextLine("Café"),
    Barcode("EAN13", "4006381333931", hri=2),
    Barcode("CODE39", "ABC-1", hri=2),
    Barcode("CODE128", "R{1}", hri=2),
    QrCode(b"TOKEN", module=5, ec="H", model=2),
]


@pytest.mark.parametrize("chunk", [len(JOB), 1, 3])
def test_parser_reads_a_hand_built_job_in_any_chunking(chunk: int) -> None:
    parser = EscPosParser()
    signals = []
    for start in range(0, len(JOB), chunk):
        signals += parser.feed(JOB[start : start + chunk])
    assert len(signals) == 1
    receipt = signals[0]
    assert isinstance(receipt, Receipt)
    assert receipt.elements[: len(EXPECTED_ELEMENTS)] == EXPECTED_ELEMENTS
    assert receipt.cut == Cut(partial=True)
    assert parser.unknown == 0


def test_chinese_default_mode_decodes_gb_without_fs_and() -> None:
    data = H("d3 c5 bb dd c8 af 0a 1d 56 00")
    assert EscPosParser(chinese_default=True).feed(data)[0].lines == ["优惠券"]  # type: ignore[union-attr]
    assert EscPosParser().feed(data)[0].lines != ["优惠券"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("state", "replies"),
    [
        (PrinterState(), H("12 12 12 12")),
        (PrinterState(paper_near_end=True), H("12 12 12 1e")),
        (PrinterState(paper_out=True), H("1a 32 12 7e")),
        (PrinterState(cover_open=True), H("1a 16 12 12")),
        (PrinterState(cutter_error=True), H("1a 52 1a 12")),
        (PrinterState(unrecoverable=True), H("1a 52 32 12")),
        (PrinterState(offline=True), H("1a 12 12 12")),
        (PrinterState(drawer_pin3=True), H("16 12 12 12")),
    ],
)
def test_dle_eot_answers_follow_the_spec(state: PrinterState, replies: bytes) -> None:
    core = PrinterCore()
    core.state = state
    assert core.receive(H("10 04 01 10 04 02 10 04 03 10 04 04")).reply == replies


def test_status_is_answered_in_real_time_while_data_is_held() -> None:
    core = PrinterCore()
    core.set_status(cover_open=True)
    out = core.receive(JOB + H("1d 28 48 06 00 30 30 41 42 43 44"))  # job + process-ID request
    assert (out.reply, core.receipts, core.held) == (b"", [], len(JOB) + 11)
    assert core.receive(H("10 04")).reply == b""  # a DLE EOT split across reads…
    assert core.receive(H("02")).reply == H("16")  # …is still answered: cover open
    out = core.set_status(cover_open=False)
    assert out.reply == H("37 22 41 42 43 44 00")  # processed in order, then the answer
    assert len(core.receipts) == 1
    assert core.held == 0


def test_silent_and_junk_modes_and_asb_push() -> None:
    core = PrinterCore()
    core.status_mode = StatusMode.SILENT
    assert core.receive(H("10 04 01")).reply == b""
    core.status_mode = StatusMode.JUNK
    assert core.receive(H("10 04 01")).reply == H("ff")
    core.status_mode = StatusMode.NORMAL
    assert core.receive(H("1d 61 0f")).reply == H("10 00 00 00")  # GS a: first block at once
    assert core.set_status(paper_out=True).reply == H("18 00 0f 00")  # and on every change
    assert core.status_requests == 2


def test_paper_runs_out_after_the_roll_is_used_up() -> None:
    core = PrinterCore()
    core.paper_left = 1
    core.receive(JOB)
    core.receive(JOB)
    assert len(core.receipts) == 1
    assert core.state.paper_out
    assert core.held == len(JOB)


def test_text_and_png_rendering(tmp_path: Path) -> None:
    receipt = EscPosParser().feed(JOB)[0]
    assert isinstance(receipt, Receipt)
    text = to_text(receipt)
    assert "STORE 42" in text
    assert "优惠券 10元" in text
    assert "[QR TOKEN]" in text
    assert "[EAN13 4006381333931]" in text
    png = to_png(receipt, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] == 48 * 12 + 32
        assert image.size[1] > 300


async def test_tcp_power_cycle_refuses_then_accepts_on_the_same_port() -> None:
    async with PrinterEmulator() as emulator:
        port = await emulator.start_tcp()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(H("10 04 04") + JOB)
        assert await reader.readexactly(1) == H("12")
        await emulator.power_off()
        assert await reader.read(100) == b""  # connection reset or closed
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await emulator.power_on()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(H("10 04 01"))
        assert await reader.readexactly(1) == H("12")
        writer.close()
        assert len(emulator.receipts) == 1
        assert emulator.connections == 2


async def test_pty_answers_status_and_vanishes_on_power_off(tmp_path: Path) -> None:
    link = tmp_path / "ttyPrinter"
    async with PrinterEmulator() as emulator:
        emulator.start_pty(link)
        assert os.readlink(link) == emulator.device_path
        port = serial.Serial(str(link), 19200, timeout=2)
        try:
            await asyncio.to_thread(port.write, JOB + H("10 04 02"))
            assert await asyncio.to_thread(port.read, 1) == H("12")
            assert len(emulator.receipts) == 1
            await emulator.power_off()
            assert not link.exists()
            with pytest.raises(serial.SerialException):
                await asyncio.to_thread(port.read, 1)
        finally:
            port.close()
        await emulator.power_on()
        assert os.readlink(link) == emulator.device_path


def test_cli_prints_receipts_saves_pngs_and_exits_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "hardware.cli", "printer", "--tcp", "0"]
    proc = subprocess.Popen(
        [*command, "--png-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline().decode()
        port = int(banner.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(JOB + H("10 04 01"))
            assert sock.recv(1) == H("12")
        deadline = time.monotonic() + 5
        while not list(tmp_path.glob("*.png")) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "--- receipt 1 ---" in stdout.decode()
    assert "优惠券 10元" in stdout.decode()
    assert len(list(tmp_path.glob("receipt-*.png"))) == 1
