"""`storeedge agent doctor`: a good setup passes; each fault is reported, with its fix.

Every fault is real: a pty for the scanner (removed, or chmod'ed away from the service
user), the TCP printer emulator, the loopback cloud stopped, the agent's token revoked, the
box's clock skewed against the cloud's, and a 1 MiB tmpfs filled up for the state dir.
"""

import asyncio
import contextlib
import os
import pwd
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from field_helpers import until

from agent.cli.main import main
from agent.config import load_config
from agent.credentials import enroll, load_credentials, save_credentials
from agent.diagnostics.checks import CheckResult, Outcome, exit_code
from agent.diagnostics.doctor import run_doctor
from agent.runtime import AgentRuntime
from cloud.config import CloudConfig
from cloud.service import RunningCloud, start_cloud
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner

ADMIN = "doctor-admin"
MIB = 1024 * 1024


@dataclass
class Box:
    cloud: RunningCloud
    scanner: PtyScanner
    printer: PrinterEmulator
    config: Path
    state: Path
    scanner_port: str

    def write(self, scanner_port: str | None = None, state: Path | None = None) -> Path:
        self.config.write_text(
            f'[agent]\nstate_dir = "{state or self.state}"\n\n'
            f'[cloud]\nurl = "{self.cloud.url}"\n\n[status_page]\nport = 0\n\n'
            f'[[devices]]\nid = "scanner-1"\nkind = "scanner"\ntransport = "serial"\n'
            f'port = "{scanner_port or self.scanner_port}"\n\n'
            f'[[devices]]\nid = "printer-1"\nkind = "printer"\ntransport = "tcp"\n'
            f'host = "127.0.0.1"\nport = {self.printer_port}\n'
        )
        return self.config

    printer_port: int = 0


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    cloud = await start_cloud(
        CloudConfig(db_url=f"sqlite:///{tmp_path / 'cloud.db'}", admin_token=ADMIN, port=0)
    )
    state = tmp_path / "state"
    save_credentials(state, await enroll(cloud.url, (await cloud.create_enroll_code("s-doc")).code))
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)  # as StateDirectory= does for the service
    scanner = PtyScanner(tmp_path / "scanner")
    os.chmod(scanner.device_path, 0o666)  # what the udev rules give the service user
    printer = PrinterEmulator()
    box = Box(cloud, scanner, printer, tmp_path / "agent.toml", state, str(scanner.link))
    box.printer_port = await printer.start_tcp()
    box.write()
    try:
        yield box
    finally:
        await printer.close()
        scanner.close()
        await cloud.stop()


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _only_failure(results: list[CheckResult], name: str, fix_part: str) -> CheckResult:
    failed = [r for r in results if r.outcome is Outcome.FAIL]
    assert [r.name for r in failed] == [name], [(r.name, r.detail) for r in failed]
    assert fix_part in failed[0].fix, failed[0].fix
    return failed[0]


async def _doctor(box: Box, **kwargs: object) -> list[CheckResult]:
    kwargs.setdefault("user", "nobody")  # a real unprivileged account: root passes any mode
    kwargs.setdefault("min_free_bytes", MIB)
    return await run_doctor(box.config, **kwargs)  # type: ignore[arg-type]


async def test_a_good_setup_passes(box: Box) -> None:
    results = await _doctor(box)
    checks = _by_name(results)
    assert exit_code(results) == 0, [(r.name, r.detail) for r in results if r.fix]
    for name in (
        "config",
        "state dir",
        "free disk",
        "enrollment",
        "port scanner-1",
        "printer printer-1",
        "cloud DNS",
        "cloud reachable",
        "cloud service",
        "credentials",
        "clock",
    ):
        assert checks[name].outcome is Outcome.PASS, checks[name]
    assert checks["cloud TLS"].outcome is Outcome.SKIP  # plain http on loopback
    assert checks["agent"].outcome is Outcome.SKIP  # not running: devices probed directly


async def test_with_the_agent_running_devices_come_from_its_own_view(box: Box) -> None:
    config = load_config(box.config)
    runtime = AgentRuntime(config, load_credentials(box.state))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await runtime.started.wait()
        await until(lambda: {d.health().state for d in runtime.drivers} == {"online"}, 10)
        assert runtime.status_page_url
        port = int(runtime.status_page_url.rsplit(":", 1)[1].strip("/"))
        box.config.write_text(box.config.read_text().replace("port = 0", f"port = {port}", 1))
        results = await _doctor(box)
        checks = _by_name(results)
        assert checks["agent"].outcome is Outcome.PASS
        assert checks["printer printer-1"].detail.startswith("agent reports online")
        assert exit_code(results) == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_missing_port(box: Box, tmp_path: Path) -> None:
    box.write(scanner_port=str(tmp_path / "no-such-scanner"))
    result = _only_failure(await _doctor(box), "port scanner-1", "plug the device in")
    assert "does not exist" in result.detail


async def test_wrong_permissions(box: Box) -> None:
    os.chmod(box.scanner.device_path, 0o600)  # root's only: not the service user's
    result = _only_failure(await _doctor(box), "port scanner-1", "usermod -aG")
    assert "nobody has no read/write access" in result.detail
    assert "udev rules" in result.fix


async def test_cloud_down(box: Box) -> None:
    await box.cloud.stop()
    results = await _doctor(box)
    result = _only_failure(results, "cloud reachable", "keeps buffering")
    assert "refused" in result.detail.lower()
    assert _by_name(results)["credentials"].outcome is Outcome.SKIP


async def test_bad_token(box: Box) -> None:
    agent_id = load_credentials(box.state).agent_id
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http,
        http.post(f"{box.cloud.url}/api/agents/{agent_id}/revoke") as r,
    ):
        assert r.status == 200
    result = _only_failure(await _doctor(box), "credentials", "storeedge agent enroll")
    assert "revoked" in result.detail


async def test_bad_clock(box: Box) -> None:
    skewed = lambda: time.time() - 120.0  # noqa: E731  (the box's clock runs 2 min late)
    result = _only_failure(await _doctor(box, clock=skewed), "clock", "timedatectl set-ntp true")
    assert "120" in result.detail
    assert "behind" in result.detail


async def test_full_disk(box: Box, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        state = disk / "state"
        save_credentials(state, load_credentials(box.state))
        os.chown(state, pwd.getpwnam("nobody").pw_uid, -1)
        box.write(state=state)
        with (disk / "filler").open("wb", buffering=0) as filler:  # to the last block
            for size in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        filler.write(b"\0" * size)
        results = await _doctor(box, min_free_bytes=256 * MIB)
        checks = _by_name(results)
        assert checks["free disk"].outcome is Outcome.FAIL
        assert "never the outbox" in checks["free disk"].fix
        assert checks["state dir"].outcome is Outcome.FAIL  # a write really fails
        assert "No space left" in checks["state dir"].detail
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def test_cli_table_and_exit_codes(box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "agent",
        "doctor",
        "--config",
        str(box.config),
        "--user",
        "nobody",
        "--min-free-mb",
        "1",
    ]
    assert await asyncio.to_thread(main, argv) == 0
    assert "all passed" in capsys.readouterr().out
    await box.cloud.stop()
    assert await asyncio.to_thread(main, argv) == 1
    out = capsys.readouterr().out
    assert "FAIL  cloud reachable" in out
    assert "fix: check the store's internet" in out
