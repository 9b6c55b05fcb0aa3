"""The real HidScanner reading real input_event records from the FIFO emulator."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scanner_helpers import RecordingSink, running

from agent.config import HidScannerConfig, parse_config
from agent.devices.registry import build_driver
from agent.devices.scanner import hid_driver
from agent.devices.scanner.hid_driver import HidScanner
from hardware.emulators.hid_scanner import HidScannerEmulator

EAN = "]E04006381333931"
GS1 = "]C101095011015300031725010110ABC123\x1d21XYZ"
COUPON = "]Q1SE1.eyJjIjoiMSJ9.c2ln"
BADGE = "STAFF-004711"


@pytest.fixture(autouse=True)
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hid_driver, "RECONNECT_INITIAL_S", 0.01)
    monkeypatch.setattr(hid_driver, "RECONNECT_MAX_S", 0.05)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[HidScannerEmulator]:
    with HidScannerEmulator(tmp_path / "usb-Scanner-event-kbd") as scanner:
        yield scanner


def make_config(path: Path, **overrides: Any) -> HidScannerConfig:
    fields: dict[str, Any] = {"id": "scanner-till", "kind": "scanner", "transport": "hid"}
    return HidScannerConfig(**(fields | {"path": str(path)} | overrides))


async def test_typed_scans_arrive_decoded_routed_and_in_order(
    emulator: HidScannerEmulator,
) -> None:
    sink = RecordingSink(delay_s=0.005)
    driver = HidScanner(make_config(emulator.path), sink)
    async with running(driver):
        await sink.connected()
        emulator.send_raw(b"".join(emulator.records(code) for code in (EAN, GS1, COUPON, BADGE)))
        await sink.wait_for(lambda: len(sink.scans()) == 4)
        health = driver.health()
    scans = sink.scans()
    assert [s.classification for s in scans] == ["product", "product", "coupon", "staff_badge"]
    assert scans[1].gs1 == {"01": "09501101530003", "17": "250101", "10": "ABC123", "21": "XYZ"}
    assert scans[0].raw == EAN.encode()  # a wedge sends keys: raw is the decoded text
    assert sink.max_in_flight == 1
    # A FIFO is no evdev node: the grab fails with ENOTTY, is counted and shown.
    assert sink.status_payloads()[0].detail == (
        f"{emulator.path}; not an evdev node (EVIOCGRAB: ENOTTY): keystrokes are not grabbed"
    )
    assert health.counters["grab_failed"] == 1
    assert health.counters["keys"] > 80
    assert health.counters["unknown_keys"] == 0


@pytest.mark.parametrize("layout", ["uk", "de", "fr"])
async def test_non_us_layouts_decode_when_both_sides_agree(tmp_path: Path, layout: str) -> None:
    text = "]C10109501101530003\x1d10AB-12/x?%"  # GS1 AI (10) takes no @ or #
    sink = RecordingSink()
    with HidScannerEmulator(tmp_path / "kbd", layout) as scanner:
        async with running(HidScanner(make_config(scanner.path, layout=layout), sink)):
            await sink.connected()
            scanner.scan(text)
            await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert sink.texts() == [text[3:]]
    assert sink.scans()[0].gs1 == {"01": "09501101530003", "10": "AB-12/x?%"}


async def test_a_layout_mismatch_is_unrecognised_not_a_wrong_product(tmp_path: Path) -> None:
    sink = RecordingSink()
    with HidScannerEmulator(tmp_path / "kbd", "fr") as scanner:  # scanner set to AZERTY
        async with running(HidScanner(make_config(scanner.path, layout="us"), sink)):
            await sink.connected()
            scanner.scan("4006381333931")
            await sink.wait_for(lambda: len(sink.scans()) == 1)
    scan = sink.scans()[0]
    assert scan.text == "$))^#*!###(#!"
    assert scan.classification == "unrecognised"


async def test_records_split_across_writes_and_a_substitute_key_for_gs(
    emulator: HidScannerEmulator,
) -> None:
    emulator.gs = "F8"
    sink = RecordingSink()
    async with running(HidScanner(make_config(emulator.path, gs_substitute="F8"), sink)):
        await sink.connected()
        emulator.send_raw(emulator.records(GS1), chunk=25, gap_s=0.0002)  # never aligned
        await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert sink.scans()[0].classification == "product"


async def test_a_suffixless_scanner_is_framed_by_the_inter_key_timeout(
    emulator: HidScannerEmulator,
) -> None:
    sink = RecordingSink()
    async with running(HidScanner(make_config(emulator.path, inter_key_timeout_ms=50), sink)):
        await sink.connected()
        emulator.scan(EAN, terminator=None)
        await sink.wait_for(lambda: len(sink.scans()) == 1, timeout=1.0)
    assert sink.texts() == ["4006381333931"]


async def test_a_kernel_buffer_overflow_marks_the_scan_and_is_a_counted_loss(
    emulator: HidScannerEmulator,
) -> None:
    sink = RecordingSink()
    driver = HidScanner(make_config(emulator.path), sink)
    typed = emulator.records(EAN)
    half = len(typed) // 2 - len(typed) // 2 % 24  # whole input_event records
    async with running(driver):
        await sink.connected()
        emulator.send_raw(typed[:half])
        emulator.overflow()  # the kernel dropped what came next: SYN_DROPPED
        emulator.send_raw(typed[half:])
        emulator.scan(EAN)
        await sink.wait_for(lambda: len(sink.scans()) == 2)
        health = driver.health()
    damaged, clean = sink.scans()
    assert damaged.classification == "unrecognised"
    assert damaged.reason is not None
    assert "U+FFFD" in damaged.reason  # marked, never taken for a wrong product
    assert clean.text == EAN.removeprefix("]E0")
    assert health.counters["syn_dropped"] == 1
    assert sink.losses == {hid_driver.SYN_DROPPED_LOSS: 1}  # persisted as a loss reason


async def test_unplug_and_replug(emulator: HidScannerEmulator) -> None:
    sink = RecordingSink()
    driver = HidScanner(make_config(emulator.path), sink)
    async with running(driver):
        await sink.connected()
        emulator.scan("40063", terminator=None)  # the cable goes mid-scan
        emulator.unplug()
        await sink.wait_for(lambda: ("offline", "disconnected") in sink.statuses())
        emulator.replug()
        await sink.connected(2)
        emulator.scan(EAN)
        await sink.wait_for(lambda: len(sink.scans()) == 2)
        health = driver.health()
    assert sink.texts() == ["40063", "4006381333931"]
    assert sink.statuses() == [
        ("online", "connected"), ("offline", "disconnected"), ("online", "connected"),
    ]  # fmt: skip
    assert sink.status_payloads()[1].detail == "end of stream"
    assert health.counters["reconnects"] == 1


async def test_a_missing_device_is_one_disconnected_event(tmp_path: Path) -> None:
    sink = RecordingSink()
    async with running(HidScanner(make_config(tmp_path / "absent"), sink)):
        await sink.wait_for(lambda: sink.statuses() == [("offline", "disconnected")])
        with HidScannerEmulator(tmp_path / "absent") as scanner:
            await sink.connected()
            scanner.scan(EAN)
            await sink.wait_for(lambda: len(sink.scans()) == 1)
    assert "No such file" in (sink.status_payloads()[0].detail or "")


async def test_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-device"
    path.write_bytes(b"")
    sink = RecordingSink()
    async with running(HidScanner(make_config(path, grab=False), sink)):
        await sink.wait_for(lambda: sink.statuses() == [("offline", "disconnected")])
    assert sink.status_payloads()[0].detail == f"[Errno 19] not a character device: '{path}'"


async def test_without_grab_nothing_is_attempted(emulator: HidScannerEmulator) -> None:
    sink = RecordingSink()
    driver = HidScanner(make_config(emulator.path, grab=False), sink)
    async with running(driver):
        await sink.connected()
        assert driver.health().counters["grab_failed"] == 0
    assert sink.status_payloads()[0].detail == str(emulator.path)


def test_agent_toml_declares_wedge_scanners() -> None:
    config = parse_config(
        """
        [cloud]
        url = "https://ingest.example.com"
        [[devices]]
        id = "scanner-till"
        kind = "scanner"
        transport = "hid"
        path = "/dev/input/by-id/usb-Honeywell_1900-event-kbd"
        layout = "de"
        gs_substitute = "F8"
        """
    )
    device = config.devices[0]
    assert isinstance(device, HidScannerConfig)
    assert (device.layout, device.gs_substitute, device.grab) == ("de", "F8", True)
    assert isinstance(build_driver(device, RecordingSink()), HidScanner)


@pytest.mark.parametrize("bad", ['layout = "dvorak"', 'gs_substitute = "F13"'])
def test_bad_wedge_settings_name_the_key(bad: str) -> None:
    with pytest.raises(Exception, match=bad.split(" ")[0]):
        parse_config(
            '[cloud]\nurl = "https://x.example"\n[[devices]]\nid = "s"\nkind = "scanner"\n'
            f'transport = "hid"\npath = "/dev/input/event3"\n{bad}\n'
        )
