"""`storeedge agent` field-engineer commands: status, doctor, discover, tests, config, tokens."""

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH

EXIT_NOT_RUNNING = 3  # `status`: the agent does not answer (LSB "program is not running")


def register(sub: Any) -> None:
    """Add the field-engineer commands under `agent`."""
    status = sub.add_parser("status", help="backlog, last sync, cloud token, devices")
    status.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    status.add_argument("--json", action="store_true", help="the raw status document")
    status.set_defaults(func=_status)

    doctor = sub.add_parser("doctor", help="check everything; a fix for every failure")
    doctor.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    doctor.add_argument("--user", help="check device access for this user (default storeedge)")
    doctor.add_argument("--min-free-mb", type=float, default=256.0, help="free disk needed")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=_doctor)

    discover = sub.add_parser("discover", help="serial ports, HID scanners, mirrors, printers")
    discover.add_argument("--no-mdns", action="store_true", help="skip the mDNS browse")
    discover.add_argument(
        "--scan-9100",
        action="store_true",
        help="also try the printer port on every host of the local subnet",
    )
    discover.add_argument(
        "--subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help="scan this network instead of the box's own (repeatable)",
    )
    discover.add_argument("--port", type=int, default=9100, help="port to scan (default 9100)")
    discover.set_defaults(func=_discover)

    test_print = sub.add_parser("test-print", help="print a test page on DEVICE")
    test_print.add_argument("device")
    test_print.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    test_print.set_defaults(func=_test_print)

    test_scan = sub.add_parser("test-scan", help="wait for one scan on DEVICE, show its decoding")
    test_scan.add_argument("device")
    test_scan.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    test_scan.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
    test_scan.set_defaults(func=_test_scan)

    config = sub.add_parser("config", help="agent.toml tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_sub.add_parser("check", help="validate FILE; errors name the key and line")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_config_check)

    rotate = sub.add_parser("rotate-token", help="get a new cloud token; the old one then dies")
    rotate.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    rotate.set_defaults(func=_rotate)


def _load(path: Path) -> Any:
    from agent.config import load_config
    from agent.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _config_check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return 2
    print(f"{args.file}: valid")
    print(f"  state dir  {config.agent.state_dir}")
    print(f"  cloud      {config.cloud.url}")
    page = config.status_page
    print(f"  status     {'off' if not page.enabled else f'{page.host}:{page.port}'}")
    for device in config.devices:
        where = getattr(device, "port", None) or getattr(device, "path", None) or ""
        host = getattr(device, "host", None)
        if host:
            where = f"{host}:{getattr(device, 'port', '')}"
        print(f"  {device.kind:8} {device.id:24} {device.transport:6} {where}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from agent.diagnostics import local_api, offline

    config = _load(args.config)
    if config is None:
        return 2
    try:
        code, doc = asyncio.run(local_api.call(config, "GET", "/api/status"))
    except local_api.AgentNotRunning as exc:
        print(f"agent not running ({exc})")
        print(offline.describe(config))
        return EXIT_NOT_RUNNING
    if code != 200:
        print(f"error: the agent answered HTTP {code}: {doc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(offline.render_status(doc, config))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from agent.diagnostics.checks import exit_code, render_json, render_table
    from agent.diagnostics.doctor import run_doctor

    results = asyncio.run(
        run_doctor(args.config, user=args.user, min_free_bytes=int(args.min_free_mb * 1024**2))
    )
    print(render_json(results) if args.json else render_table(results))
    return exit_code(results)


def _discover(args: argparse.Namespace) -> int:
    import ipaddress

    from agent.diagnostics import discover

    async def run() -> list[discover.Found]:
        found = discover.serial_ports() + discover.hid_scanners()
        if not args.no_mdns:
            found += await discover.mdns_services()
        if args.scan_9100:
            nets = [ipaddress.ip_network(s, strict=False) for s in args.subnet]
            subnets = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
            hosts = discover.scan_targets(subnets or discover.local_subnets())
            found += await discover.scan_port(hosts, args.port)
        return found

    try:
        found = asyncio.run(run())
    except (discover.DiscoverError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("nothing found (no serial ports, HID keyboards, mDNS services or printers)")
    for item in found:
        print(f"{item.source:6} {item.address}\n       {item.what}")
        for line in item.hint.splitlines():
            print(f"       | {line}")
    return 0


def _test_print(args: argparse.Namespace) -> int:
    from agent.diagnostics import local_api
    from agent.diagnostics.device_tests import DeviceTestError, standalone_print

    config = _load(args.config)
    if config is None:
        return 2
    path = f"/api/devices/{args.device}/test-print"
    try:
        try:
            code, result = asyncio.run(local_api.call(config, "POST", path, timeout_s=60))
            if code == 404:
                raise DeviceTestError(result.get("error", "unknown device"))
            via = "through the running agent"
        except local_api.AgentNotRunning:
            result = asyncio.run(standalone_print(config, args.device))
            via = "directly (the agent is not running)"
    except DeviceTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.device}: {result['status']} {via}: {result['detail']}")
    return 0 if result["status"] == "completed" else 1


def _test_scan(args: argparse.Namespace) -> int:
    from agent.diagnostics import local_api
    from agent.diagnostics.device_tests import DeviceTestError, standalone_scan

    config = _load(args.config)
    if config is None:
        return 2
    print(f"scan a code with {args.device} now ({args.timeout:g} s)…", file=sys.stderr)
    path = f"/api/devices/{args.device}/test-scan?timeout={args.timeout:g}"
    try:
        try:
            code, scan = asyncio.run(
                local_api.call(config, "POST", path, timeout_s=args.timeout + 5)
            )
            if code != 200:
                raise DeviceTestError(scan.get("error", f"HTTP {code}"))
        except local_api.AgentNotRunning:
            scan = asyncio.run(standalone_scan(config, args.device, args.timeout)).as_json()
    except DeviceTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from agent.diagnostics.offline import render_scan

    print(render_scan(scan))
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from agent.credentials import (
        EnrollmentError,
        credentials_lock,
        load_credentials,
        rotate_token,
        save_credentials,
    )
    from agent.errors import ConfigError

    config = _load(args.config)
    if config is None:
        return 2
    state_dir = config.agent.state_dir
    try:
        with credentials_lock(state_dir):
            current = load_credentials(state_dir)
            rotated = asyncio.run(rotate_token(current))
            save_credentials(state_dir, rotated)
    except (ConfigError, EnrollmentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"token of agent {rotated.agent_id} rotated; a running agent takes it within seconds, "
        "and the old token stops working at its first use",
        file=sys.stderr,
    )
    return 0
