"""systemd/install.sh against a temporary DESTDIR: the expected tree, idempotent, and units
that pass `systemd-analyze verify` (no warnings either)."""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
INSTALL = REPO / "systemd" / "install.sh"
EXPECTED = {
    "etc/systemd/system/storeedge-agent.service",
    "etc/systemd/system/storeedge-cloud.service",
    "etc/udev/rules.d/99-storeedge.rules",
    "etc/storeedge/agent.toml",
    "usr/lib/sysusers.d/storeedge.conf",
    "usr/local/bin/storeedge",
    "opt/storeedge/venv/bin/storeedge",
    "opt/storeedge/docs/INSTALL.md",
    "opt/storeedge/docs/FIELD-GUIDE.md",
    "opt/storeedge/docs/RUNBOOK.md",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel, built offline with the dev venv's setuptools."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("storeedge-*.whl")
    return built


def _install(dest: Path, wheel: Path) -> str:
    env = {
        **os.environ,
        "DESTDIR": str(dest),
        "STOREEDGE_PACKAGE": str(wheel),
        "STOREEDGE_PIP_ARGS": "--no-deps --no-index",
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(INSTALL), "--cloud"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def _tree(dest: Path) -> dict[str, str]:
    """Every path outside the venv with a hash of its content (or link target)."""
    tree = {}
    for path in sorted(dest.rglob("*")):
        rel = str(path.relative_to(dest))
        if rel.startswith("opt/storeedge/venv/") and rel != "opt/storeedge/venv/bin/storeedge":
            continue
        if path.is_symlink():
            tree[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            tree[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def test_install_into_destdir_is_complete_idempotent_and_keeps_the_config(
    tmp_path: Path, wheel: Path, require_tool: Callable[..., str]
) -> None:
    require_tool("systemd-sysusers")
    dest = tmp_path / "root"
    first_log = _install(dest, wheel)
    tree = _tree(dest)
    assert set(tree) >= EXPECTED, sorted(EXPECTED - set(tree))
    assert tree["usr/local/bin/storeedge"] == "-> /opt/storeedge/venv/bin/storeedge"
    assert os.access(dest / "opt/storeedge/venv/bin/storeedge", os.X_OK)
    config = dest / "etc/storeedge/agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    # The accounts, made by systemd-sysusers in the DESTDIR, not on this host.
    passwd = (dest / "etc/passwd").read_text()
    group = (dest / "etc/group").read_text()
    assert "storeedge:x:" in passwd
    assert ":/var/lib/storeedge:/usr/sbin/nologin" in passwd
    assert any(line.startswith("dialout:") and "storeedge" in line for line in group.splitlines())
    assert any(line.startswith("input:") and "storeedge" in line for line in group.splitlines())
    # The default config is a valid one.
    check = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "agent", "config", "check", str(config)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "creating /opt/storeedge/venv" in first_log

    # A second run: same tree, nothing reinstalled, and the engineer's edit survives.
    config.write_text(config.read_text() + "\n# edited in the store\n")
    edited = _tree(dest)
    second_log = _install(dest, wheel)
    assert _tree(dest) == edited
    assert "installed" not in second_log.replace("installed /etc/storeedge", "")
    assert "creating" not in second_log
    assert (dest / "etc/passwd").read_text() == passwd


def test_units_pass_systemd_analyze_verify(
    tmp_path: Path, wheel: Path, require_tool: Callable[..., str]
) -> None:
    analyze = require_tool("systemd-analyze")
    require_tool("systemd-sysusers")
    dest = tmp_path / "root"
    _install(dest, wheel)
    # The image's own systemd (targets, sockets) is what the units are verified against.
    system = Path("/lib/systemd/system")
    shutil.copytree(system, dest / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    done = subprocess.run(
        [
            analyze,
            "verify",
            f"--root={dest}",
            "/etc/systemd/system/storeedge-agent.service",
            "/etc/systemd/system/storeedge-cloud.service",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
    assert done.stderr.strip() == "", done.stderr  # no warnings either


def test_verify_catches_a_broken_unit(
    tmp_path: Path, wheel: Path, require_tool: Callable[..., str]
) -> None:
    """The check above can fail: a missing ExecStart binary is an error."""
    analyze = require_tool("systemd-analyze")
    require_tool("systemd-sysusers")
    dest = tmp_path / "root"
    _install(dest, wheel)
    shutil.copytree(
        "/lib/systemd/system", dest / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True
    )
    (dest / "opt/storeedge/venv/bin/storeedge").unlink()
    done = subprocess.run(
        [analyze, "verify", f"--root={dest}", "/etc/systemd/system/storeedge-agent.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "is not executable" in done.stderr


def test_agent_unit_has_the_promised_supervision_and_sandbox() -> None:
    unit = (REPO / "systemd/storeedge-agent.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "User=storeedge",
        "SupplementaryGroups=dialout input",
        "StateDirectory=storeedge",
        "ConfigurationDirectory=storeedge",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
    ):
        assert line in unit, line
