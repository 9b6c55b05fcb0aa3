"""The field-engineer commands as typed: config check, discover, test-scan, test-print, status.

Standalone (agent down: the command opens the device itself, nothing reaches the outbox)
and through a running agent (which owns the ports).
"""

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest
from field_helpers import fake_credentials

from agent.cli.main import main
from agent.config import load_config
from agent.credentials import load_credentials
from agent.diagnostics import discover
from agent.runtime import AgentRuntime
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

NOWHERE = "http://127.0.0.1:9"


def _config(tmp_path: Path, scanner: PtyScanner, printer_port: int, page_port: int = 0) -> Path:
    state = tmp_path / "state"
    fake_credentials(state, NOWHERE)
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{state}"\n\n[cloud]\nurl = "{NOWHERE}"\n\n'
        f"[status_page]\nport = {page_port}\n\n"
        f'[[devices]]\nid = "scanner-1"\nkind = "scanner"\ntransport = "serial"\n'
        f'port = "{scanner.link}"\n\n'
        f'[[devices]]\nid = "printer-1"\nkind = "printer"\ntransport = "tcp"\n'
        f'host = "127.0.0.1"\nport = {printer_port}\npoll_interval_s = 0.2\n'
    )
    return path


def test_config_check_names_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[cloud]\nurl = "https://x.example"\n\n[[devices]]\nid = "s"\nkind = "scanner"\n'
        'transport = "serial"\nport = "/dev/ttyACM0"\nbaudrate = -1\n'
    )
    assert main(["agent", "config", "check", str(bad)]) == 2
    assert "bad.toml:9: devices[0].baudrate" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(bad.read_text().replace("baudrate = -1", "baudrate = 9600"))
    assert main(["agent", "config", "check", str(good)]) == 0
    assert "scanner  s" in capsys.readouterr().out


async def test_discover_finds_by_id_ports_and_a_printer_on_a_bounded_scan(tmp_path: Path) -> None:
    scanner = PtyScanner(tmp_path / "pty")
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Honeywell_1900-if00").symlink_to(scanner.device_path)
    printer = PrinterEmulator()
    port = await printer.start_tcp()
    try:
        (found,) = discover.serial_ports(by_id)
        assert found.address.endswith("usb-Honeywell_1900-if00")
        assert scanner.device_path in found.what
        assert 'port = "' in found.hint
        hosts = discover.scan_targets([ipaddress.IPv4Network("127.0.0.1/32")])
        (hit,) = await discover.scan_port(hosts, port)
        assert hit.address == f"127.0.0.1:{port}"
        assert "ESC/POS" in hit.what
        assert f"port = {port}" in hit.hint
    finally:
        await printer.close()
        scanner.close()
    with pytest.raises(discover.DiscoverError, match="limit"):
        discover.scan_targets([ipaddress.IPv4Network("10.0.0.0/16")])
    with pytest.raises(discover.DiscoverError, match="not a local"):
        discover.scan_targets([ipaddress.IPv4Network("8.8.8.0/24")])


async def test_standalone_scan_and_print_with_the_agent_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scanner = PtyScanner(tmp_path / "scanner")
    printer = PrinterEmulator()
    config = _config(tmp_path, scanner, await printer.start_tcp(), page_port=1)  # nothing there
    try:

        async def type_a_code() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(scanner.scan, "SE1.coupon-token")

        typing = asyncio.ensure_future(type_a_code())
        argv = ["agent", "test-scan", "scanner-1", "--config", str(config), "--timeout", "10"]
        assert await asyncio.to_thread(main, argv) == 0
        await typing
        out = capsys.readouterr().out
        assert "'SE1.coupon-token'" in out
        assert "classification coupon" in out
        argv = ["agent", "test-print", "printer-1", "--config", str(config)]
        assert await asyncio.to_thread(main, argv) == 0
        assert "completed directly" in capsys.readouterr().out
        assert any("storeedge test page" in line for line in printer.receipts[-1].lines)
        assert not (tmp_path / "state" / "outbox.db").exists()  # nothing recorded
        # The agent down, `status` says so and what it can read from disk.
        assert await asyncio.to_thread(main, ["agent", "status", "--config", str(config)]) == 3
        assert "agent not running" in capsys.readouterr().out
    finally:
        await printer.close()
        scanner.close()


async def test_through_the_running_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        page_port = sock.getsockname()[1]
    scanner = PtyScanner(tmp_path / "scanner")
    printer = PrinterEmulator()
    path = _config(tmp_path, scanner, await printer.start_tcp(), page_port)
    runtime = AgentRuntime(load_config(path), load_credentials(tmp_path / "state"))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await runtime.started.wait()

        async def type_a_code() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(scanner.scan, "]E04006381333931")

        typing = asyncio.ensure_future(type_a_code())
        argv = ["agent", "test-scan", "scanner-1", "--config", str(path), "--timeout", "10"]
        assert await asyncio.to_thread(main, argv) == 0
        await typing
        out = capsys.readouterr().out
        assert "classification product" in out
        assert "EAN-13" in out
        argv = ["agent", "test-print", "printer-1", "--config", str(path)]
        assert await asyncio.to_thread(main, argv) == 0
        assert "through the running agent" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["agent", "status", "--config", str(path)]) == 0
        out = capsys.readouterr().out
        assert "scanner-1" in out
        assert "printer-1" in out
        assert "backlog" in out
        assert "4006381333931" in out  # the last scans, decoded
        assert (await runtime.outbox.stats()).backlog_events > 0  # type: ignore[union-attr]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await printer.close()
        scanner.close()
