"""TcpPrinter and SerialPrinter against the real printer emulator over TCP and a pty."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from printer_helpers import RecordingSink, running

from agent.config import SerialPrinterConfig, TcpPrinterConfig
from agent.devices.printer import driver as printer_driver
from agent.devices.printer.driver import NOT_PRINTED_NO_START, SerialPrinter, TcpPrinter
from agent.devices.printer.queue import UNSENT_RESTART, JobState
from agent.devices.printer.templates import COPY_LINE, COPY_TITLE
from hardware.emulators.printer import PrinterEmulator, StatusMode
from hardware.emulators.receipt import Receipt
from protocol.events import DeviceStatusPayload

DEVICE = "printer-till"
FAST: dict[str, Any] = {"poll_interval_s": 0.05, "status_timeout_s": 1.0, "confirm_timeout_s": 0.5}


def coupon(n: int) -> dict[str, Any]:
    return {"title": f"COUPON {n}", "value": "10 CNY", "token": f"https://c.example/{n}"}


def titles(receipts: list[Receipt]) -> list[str]:
    return [next(line for line in r.lines if line.startswith("COUPON")) for r in receipts]


@pytest.fixture(autouse=True)
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(printer_driver, "RECONNECT_INITIAL_S", 0.02)
    monkeypatch.setattr(printer_driver, "RECONNECT_MAX_S", 0.1)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def emulator() -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator() as emu:
        await emu.start_tcp()
        yield emu


def tcp_printer(
    emulator: PrinterEmulator, sink: RecordingSink, state_dir: Path, **overrides: Any
) -> TcpPrinter:
    fields = {"id": DEVICE, "kind": "printer", "transport": "tcp", "host": "127.0.0.1"}
    config = TcpPrinterConfig(**(fields | {"port": emulator.port} | FAST | overrides))
    return TcpPrinter(config, sink, state_dir=state_dir)


async def connected(sink: RecordingSink, times: int = 1) -> None:
    await sink.wait_for(lambda: sink.statuses().count(("online", "connected")) >= times)


async def test_jobs_print_in_order_each_reported_once(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        for n in range(3):
            job = await printer.submit_template(f"job-{n}", "coupon", coupon(n))
            assert job.state is JobState.QUEUED
        await sink.wait_for(lambda: len(sink.completed()) == 3)
        again = await printer.submit_template("job-1", "coupon", coupon(1))  # a caller retry
        await asyncio.sleep(0.2)
        health = printer.health()
    assert again.state is JobState.DONE
    assert titles(emulator.receipts) == ["COUPON 0", "COUPON 1", "COUPON 2"]
    assert sink.completed() == ["job-0", "job-1", "job-2"]
    assert sink.statuses() == [("online", "connected")]
    assert {device for device, _ in sink.events} == {DEVICE}
    assert (health.state, health.condition) == ("online", "connected")
    assert health.counters["jobs_printed"] == 3
    assert health.counters["jobs_queued"] == 0
    assert health.counters["bytes_sent"] > 0
    assert (tmp_path / "printqueue.db").exists()


@pytest.mark.parametrize("fault", ["power", "paper_out", "cover_open"])
async def test_jobs_held_back_by_a_fault_print_exactly_once_after_an_agent_restart(
    emulator: PrinterEmulator, tmp_path: Path, fault: str
) -> None:
    if fault == "power":
        await emulator.power_off()
    else:
        emulator.set_status(**{fault: True})
    expected = [("offline", "disconnected")] if fault == "power" else [
        ("online", "connected"), ("degraded", fault)]  # fmt: skip
    before = RecordingSink()
    first = tcp_printer(emulator, before, tmp_path)
    async with running(first):
        await before.wait_for(lambda: before.statuses() == expected)
        for n in range(3):
            await first.submit_template(f"job-{n}", "coupon", coupon(n))
        await asyncio.sleep(0.3)  # several polls: nothing may go out while the fault holds
        assert first.health().counters["jobs_queued"] == 3
    assert before.statuses() == expected
    assert emulator.receipts == []
    assert emulator.core.bytes_received == emulator.core.status_requests * 3  # only DLE EOTs

    after = RecordingSink()  # the agent restarted: a new driver over the same state dir
    second = tcp_printer(emulator, after, tmp_path)
    async with running(second):
        await asyncio.sleep(0.1)
        assert emulator.receipts == []
        if fault == "power":
            await emulator.power_on()
        else:
            emulator.set_status(**{fault: False})
        await after.wait_for(lambda: len(after.completed()) == 3)
        await asyncio.sleep(0.2)
    assert titles(emulator.receipts) == ["COUPON 0", "COUPON 1", "COUPON 2"]
    assert after.completed() == ["job-0", "job-1", "job-2"]
    assert before.completed() == []
    assert after.failed() == {}


async def test_paper_out_mid_job_waits_then_completes_once(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.paper_left = 1
    printer = tcp_printer(emulator, sink, tmp_path, confirm_timeout_s=0.2)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await printer.submit_template("job-1", "coupon", coupon(1))
        await sink.wait_for(lambda: ("degraded", "paper_out") in sink.statuses())
        await asyncio.sleep(0.5)  # well past confirm_timeout_s: time with no paper is not counted
        assert emulator.core.held > 0
        assert sink.failed() == {}
        emulator.core.paper_left = None
        emulator.set_status(paper_out=False, paper_near_end=False)
        await sink.wait_for(lambda: len(sink.completed()) == 2)
        await sink.wait_for(lambda: sink.statuses()[-1] == ("online", "recovered"))
    assert titles(emulator.receipts) == ["COUPON 0", "COUPON 1"]
    assert sink.failed() == {}


async def test_agent_restart_with_only_the_start_marker_out_prints_the_job_once(
    emulator: PrinterEmulator, tmp_path: Path
) -> None:
    emulator.core.paper_left = 0  # the start marker goes out and waits: no paper
    before = RecordingSink()
    first = tcp_printer(emulator, before, tmp_path)
    async with running(first):
        await first.submit_template("job-0", "coupon", coupon(0))
        await before.wait_for(lambda: ("degraded", "paper_out") in before.statuses())
        await asyncio.sleep(0.2)
    assert emulator.core.held > 0  # the start marker sits in the printer's buffer

    after = RecordingSink()
    second = tcp_printer(emulator, after, tmp_path)
    async with running(second):
        await after.wait_for(lambda: ("degraded", "paper_out") in after.statuses())
        emulator.core.paper_left = None
        emulator.set_status(paper_out=False, paper_near_end=False)
        await after.wait_for(lambda: after.completed() == ["job-0"])
        await asyncio.sleep(0.2)
    assert titles(emulator.receipts) == ["COUPON 0"]  # printed once, after the restart
    [outcome] = after.outcomes()
    assert (outcome.reprint, outcome.attempts, outcome.note) == (False, 1, UNSENT_RESTART)
    assert before.completed() == []
    assert after.failed() == {}


async def test_link_lost_before_the_start_is_confirmed_requeues_and_prints_once(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.hang_up_at_marker(0)  # drops the link instead of answering the start
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
        await asyncio.sleep(0.2)
    assert titles(emulator.receipts) == ["COUPON 0"]
    assert all(COPY_TITLE not in r.lines for r in emulator.receipts)
    [outcome] = sink.outcomes()
    assert (outcome.reprint, outcome.attempts) == (False, 1)
    assert outcome.note is not None
    assert outcome.note.startswith("link lost before the start")
    assert emulator.connections == 2
    assert sink.statuses()[:3] == [
        ("online", "connected"), ("offline", "disconnected"), ("online", "connected")]  # fmt: skip


async def test_lost_final_confirmation_prints_one_marked_copy(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.hang_up_at_marker(1)  # start answered, job printed, end marker: hang-up
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
        await printer.submit_template("job-1", "coupon", coupon(1))
        await sink.wait_for(lambda: sink.completed() == ["job-0", "job-1"])
        health = printer.health()
    original, copy, other = emulator.receipts
    assert COPY_TITLE not in original.lines
    assert COPY_TITLE not in other.lines
    assert copy.lines[:2] == [COPY_TITLE, COPY_LINE]  # visibly a copy, on paper
    assert titles([original, copy, other]) == ["COUPON 0", "COUPON 0", "COUPON 1"]
    first, second = sink.outcomes()
    assert (first.reprint, first.attempts) == (True, 2)
    assert first.note is not None
    assert first.note.startswith("link lost after the job was sent")
    assert (second.reprint, second.attempts) == (False, 1)
    assert sink.failed() == {}
    assert (health.counters["jobs_printed"], health.counters["jobs_failed"]) == (2, 0)


async def test_link_lost_mid_job_data_prints_one_marked_copy(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.hang_up_mid_data(1, 40)  # start answered, 40 bytes of the job, then gone
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
    [receipt] = emulator.receipts  # one cut: the torn fragment runs into the marked copy
    lines = receipt.lines
    assert lines.count(COPY_TITLE) == 1
    copy = lines[lines.index(COPY_TITLE) :]
    assert copy.count("COUPON 0") == 1
    [outcome] = sink.outcomes()
    assert (outcome.reprint, outcome.attempts) == (True, 2)


async def test_a_copy_that_is_not_confirmed_either_fails_and_is_never_printed_again(
    sink: RecordingSink, tmp_path: Path
) -> None:
    def lose_the_copys_confirmation(receipt: Receipt) -> None:
        if COPY_TITLE in receipt.lines:  # printed; its end marker comes next
            emu.core.hang_up_at_marker(0)

    async with PrinterEmulator(on_receipt=lose_the_copys_confirmation) as emu:
        await emu.start_tcp()
        emu.core.hang_up_at_marker(1)
        printer = tcp_printer(emu, sink, tmp_path)
        async with running(printer):
            await printer.submit_template("job-0", "coupon", coupon(0))
            await sink.wait_for(lambda: "job-0" in sink.failed())
            await connected(sink, times=3)
            await asyncio.sleep(0.3)
    assert len(emu.receipts) == 2  # the original and one marked copy, never a third
    assert emu.receipts[1].lines[0] == COPY_TITLE
    assert sink.failed()["job-0"].startswith("uncertain: link lost after the job was sent")
    assert sink.completed() == []


async def test_printer_vanishing_with_the_job_held_reprints_it_once_after_power_on(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.paper_left = 0
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: ("degraded", "paper_out") in sink.statuses())
        await emulator.power_off()  # the held start marker dies with the printer's buffer
        await sink.wait_for(lambda: ("offline", "disconnected") in sink.statuses())
        emulator.core.paper_left = None
        emulator.set_status(paper_out=False, paper_near_end=False)
        await emulator.power_on()
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
        await printer.submit_template("job-1", "coupon", coupon(1))
        await sink.wait_for(lambda: sink.completed() == ["job-0", "job-1"])
    assert titles(emulator.receipts) == ["COUPON 0", "COUPON 1"]  # neither lost nor doubled
    assert [o.reprint for o in sink.outcomes()] == [False, False]
    assert sink.failed() == {}
    assert sink.statuses()[:4] == [
        ("online", "connected"),
        ("degraded", "paper_out"),
        ("offline", "disconnected"),
        ("online", "connected"),
    ]


async def test_printer_that_never_answers_the_start_fails_without_printing(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.supports_process_id = False  # a clone that ignores GS ( H
    printer = tcp_printer(emulator, sink, tmp_path, confirm_timeout_s=0.2)
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: "job-0" in sink.failed())
        await asyncio.sleep(0.2)
    assert sink.failed()["job-0"].startswith(NOT_PRINTED_NO_START)
    assert emulator.receipts == []  # nothing went out but the marker


async def test_status_confirm_mode_for_printers_without_process_id(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    emulator.core.supports_process_id = False
    printer = tcp_printer(emulator, sink, tmp_path, confirm="status")
    async with running(printer):
        await printer.submit_template("job-0", "coupon", coupon(0))
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
    assert len(emulator.receipts) == 1


async def test_junk_status_is_counted_degrades_and_holds_jobs(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    printer = tcp_printer(emulator, sink, tmp_path)
    async with running(printer):
        await connected(sink)
        emulator.status_mode = StatusMode.JUNK
        await sink.wait_for(lambda: ("degraded", "status_junk") in sink.statuses())
        await printer.submit_template("job-0", "coupon", coupon(0))
        await asyncio.sleep(0.2)
        assert emulator.receipts == []  # status unknown: nothing is sent
        junk = printer.health().counters["status_junk"]
        emulator.status_mode = StatusMode.NORMAL
        await sink.wait_for(lambda: sink.completed() == ["job-0"])
    assert junk >= 4
    assert sink.statuses() == [
        ("online", "connected"), ("degraded", "status_junk"), ("online", "recovered")]  # fmt: skip


async def test_silent_printer_is_dropped_and_reconnected(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    printer = tcp_printer(emulator, sink, tmp_path, status_timeout_s=0.1)
    async with running(printer):
        await connected(sink)
        emulator.status_mode = StatusMode.SILENT
        await sink.wait_for(lambda: ("offline", "disconnected") in sink.statuses())
        emulator.status_mode = StatusMode.NORMAL
        await connected(sink, times=2)
    assert "status requests" in (printer_detail(sink, "disconnected") or "")


def printer_detail(sink: RecordingSink, condition: str) -> str | None:
    return next(
        p.detail for _, p in sink.events
        if isinstance(p, DeviceStatusPayload) and p.condition == condition
    )  # fmt: skip


async def test_asb_pushes_a_change_without_waiting_for_the_next_poll(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    printer = tcp_printer(emulator, sink, tmp_path, asb=True, poll_interval_s=30)
    async with running(printer):
        await connected(sink)
        emulator.set_status(cover_open=True)
        await sink.wait_for(lambda: ("degraded", "cover_open") in sink.statuses(), timeout=3.0)


async def test_bad_jobs_fail_at_once_even_with_the_printer_off(
    emulator: PrinterEmulator, sink: RecordingSink, tmp_path: Path
) -> None:
    await emulator.power_off()
    printer = tcp_printer(emulator, sink, tmp_path)
    bad = {**coupon(0), "title": "evil\x1b@"}
    job = await printer.submit_template("job-bad", "coupon", bad)
    again = await printer.submit_template("job-bad", "coupon", bad)
    empty = await printer.submit("job-empty", "raw", b"")
    with pytest.raises(ValueError, match="job_id"):
        await printer.submit("no spaces allowed", "raw", b"x")
    await printer.aclose()
    assert (job.state, again.state, empty.state) == (JobState.FAILED,) * 3
    assert list(sink.failed()) == ["job-bad", "job-empty"]  # one event each, retry or not
    assert sink.failed()["job-bad"].startswith("bad template data: control character")
    assert printer.health().counters["jobs_failed"] == 2


async def test_serial_printer_over_a_pty_reconnects_after_unplug(
    sink: RecordingSink, tmp_path: Path
) -> None:
    link = tmp_path / "ttyPrinter"
    async with PrinterEmulator() as emulator:
        emulator.start_pty(link)
        fields: dict[str, Any] = {"id": DEVICE, "kind": "printer", "transport": "serial"}
        config = SerialPrinterConfig(**(fields | {"port": str(link)} | FAST))
        printer = SerialPrinter(config, sink, state_dir=tmp_path)
        async with running(printer):
            await printer.submit_template("job-0", "coupon", coupon(0))
            await sink.wait_for(lambda: sink.completed() == ["job-0"])
            await emulator.power_off()
            await sink.wait_for(lambda: ("offline", "disconnected") in sink.statuses())
            await printer.submit_template("job-1", "coupon", coupon(1))
            await emulator.power_on()
            await sink.wait_for(lambda: sink.completed() == ["job-0", "job-1"])
            health = printer.health()
        assert titles(emulator.receipts) == ["COUPON 0", "COUPON 1"]
    assert health.counters["reconnects"] == 1
    assert sink.statuses()[:2] == [("online", "connected"), ("offline", "disconnected")]
