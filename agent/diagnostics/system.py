"""Checks of the box itself: config, state dir, free disk, credentials, device node access."""

import grp
import os
import pwd
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, load_config
from agent.credentials import credentials_path, load_credentials
from agent.diagnostics.checks import CheckResult
from agent.errors import ConfigError
from agent.sync.client import Credentials

SERVICE_USER = "storeedge"  # systemd/storeedge-agent.service User=
# Below this the outbox cannot ride out a long cloud outage (research/perf.md: ~1 KB/event).
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Account:
    """Whose access to check: the service's user, as systemd will run it."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def lookup(cls, name: str | None) -> "Account":
        """`name` (default: the service user if it exists, else whoever runs doctor)."""
        if name is None:
            try:
                pwd.getpwnam(SERVICE_USER)
                name = SERVICE_USER
            except KeyError:
                name = pwd.getpwuid(os.getuid()).pw_name
        entry = pwd.getpwnam(name)
        groups = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem} | {entry.pw_gid}
        return cls(name, entry.pw_uid, frozenset(groups))

    def can(self, st: os.stat_result, read: bool, write: bool) -> bool:
        """Whether the mode bits give this account the access (root: always)."""
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid in self.gids:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        return (not read or bool(bits & 4)) and (not write or bool(bits & 2))


def check_config(path: Path) -> tuple[CheckResult, AgentConfig | None]:
    """The config parses and validates."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        first = str(exc).splitlines()[0]
        return CheckResult.fail(
            "config", first, f"edit {path}, then `storeedge agent config check {path}`"
        ), None
    kinds = ", ".join(sorted({f"{d.kind}" for d in config.devices})) or "no devices"
    return CheckResult.ok("config", f"{path}: {len(config.devices)} devices ({kinds})"), config


def check_state_dir(state_dir: Path, account: Account) -> CheckResult:
    """The state dir exists and both we and the service user can write it."""
    name = "state dir"
    if not state_dir.is_dir():
        return CheckResult.fail(
            name,
            f"{state_dir} does not exist",
            f"install -d -m 0700 -o {account.name} {state_dir} "
            "(systemd's StateDirectory= does this at start)",
        )
    probe = state_dir / f".doctor-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"doctor")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return CheckResult.fail(
            name,
            f"cannot write {state_dir}: {exc.strerror}",
            "free the disk or remount it read-write; see FIELD-GUIDE",
        )
    st = state_dir.stat()
    if not account.can(st, read=True, write=True) or not st.st_mode & stat.S_IXUSR:
        return CheckResult.fail(
            name,
            f"{state_dir} is not writable by {account.name}",
            f"chown -R {account.name}: {state_dir} && chmod 0700 {state_dir}",
        )
    return CheckResult.ok(name, f"{state_dir} writable by {account.name}")


def check_disk(state_dir: Path, config: AgentConfig | None, min_free_bytes: int) -> CheckResult:
    """Enough free space on the state dir's filesystem for the outbox to grow."""
    target = state_dir
    while not target.exists() and target != target.parent:
        target = target.parent
    fs = os.statvfs(target)
    free = fs.f_bavail * fs.f_frsize
    total = fs.f_blocks * fs.f_frsize
    detail = f"{_mib(free)} free of {_mib(total)} on {target}"
    if free < min_free_bytes:
        return CheckResult.fail(
            "free disk",
            detail + f" (need {_mib(min_free_bytes)})",
            "delete old logs (journalctl --vacuum-size=100M) or other files on that disk; "
            "never the outbox: it holds unsent events",
        )
    if config is not None and config.agent.outbox_max_bytes > free:
        detail += f"; the outbox cap ({_mib(config.agent.outbox_max_bytes)}) exceeds it"
    return CheckResult.ok("free disk", detail)


def check_credentials(state_dir: Path) -> tuple[CheckResult, Credentials | None]:
    """Enrolled, and the credentials file is private."""
    path = credentials_path(state_dir)
    try:
        credentials = load_credentials(state_dir)
    except ConfigError as exc:
        return CheckResult.fail(
            "enrollment",
            str(exc),
            "storeedge agent enroll --cloud URL --code CODE "
            "(code from `storeedge cloud enroll-code --store STORE`)",
        ), None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return CheckResult.fail(
            "enrollment",
            f"{path} is mode {mode:04o}: others can read the token",
            f"chmod 0600 {path}; then rotate the token: storeedge agent rotate-token",
        ), credentials
    return CheckResult.ok(
        "enrollment", f"agent {credentials.agent_id} of store {credentials.store_id}"
    ), credentials


def device_nodes(config: AgentConfig) -> list[tuple[str, str, bool]]:
    """(device id, path, needs write) of every device that is a local node."""
    nodes = []
    for device in config.devices:
        transport = getattr(device, "transport", "")
        if transport == "serial":
            nodes.append((device.id, str(getattr(device, "port", "")), True))
        elif transport == "hid":
            nodes.append((device.id, str(getattr(device, "path", "")), False))
    return nodes


def check_node(device_id: str, path: str, write: bool, account: Account) -> CheckResult:
    """The node exists, is a character device, and the service user may open it."""
    name = f"port {device_id}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return CheckResult.fail(
            name,
            f"{path} does not exist",
            "plug the device in (or another USB port) and check the cable; "
            "`storeedge agent discover` lists what is connected",
        )
    except OSError as exc:
        return CheckResult.fail(name, f"{path}: {exc.strerror}", "check the device path")
    if not stat.S_ISCHR(st.st_mode):
        return CheckResult.fail(
            name,
            f"{path} is not a character device",
            "point the config at the device node, e.g. /dev/serial/by-id/…",
        )
    if not account.can(st, read=True, write=write):
        group = _group_name(st.st_gid)
        want = "read/write" if write else "read"
        return CheckResult.fail(
            name,
            f"{path} ({stat.filemode(st.st_mode)} group {group}): "
            f"{account.name} has no {want} access",
            f"install the udev rules (hardware/udev/99-storeedge.rules) and replug, or "
            f"usermod -aG {group} {account.name}",
        )
    return CheckResult.ok(name, f"{path} accessible to {account.name}")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _mib(value: int) -> str:
    return f"{value / 1024 / 1024:,.0f} MiB" if value >= 1024 * 1024 else f"{value:,} B"
