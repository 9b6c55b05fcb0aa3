"""Checks of the devices: printers answer a status request, mirrors are found on mDNS.

When the agent is running it owns every port, so its own view of each device is used
instead of opening the device a second time (a TCP printer often takes one client only).
"""

import asyncio
import contextlib
from typing import Any

from agent.config import AgentConfig
from agent.devices.printer.link import Link, LinkLost, SerialLink, TcpLink
from agent.devices.printer.session import PrinterSession
from agent.diagnostics.checks import CheckResult

STATUS_TIMEOUT_S = 2.0
MDNS_TIMEOUT_S = 4.0
DOWN_FIX = {
    "printer": "power, paper and cable; for LAN printers ping the address; "
    "then `storeedge agent test-print {id}`",
    "scanner": "replug the scanner; `storeedge agent test-scan {id}` and scan a code",
    "mirror": "power the mirror and check it is on the store Wi-Fi/LAN "
    "(same subnet as this box for mDNS)",
}


def from_running_agent(status: dict[str, Any]) -> list[CheckResult]:
    """One row per device, from the running agent's own state."""
    results = []
    for device in status.get("devices", []):
        name = f"{device['kind']} {device['device_id']}"
        detail = f"{device['state']} ({device.get('condition') or 'no condition'})"
        if device.get("detail"):
            detail += f": {device['detail']}"
        if device["state"] == "online":
            results.append(CheckResult.ok(name, "agent reports " + detail))
        else:
            fix = DOWN_FIX.get(device["kind"], "check the device").format(id=device["device_id"])
            results.append(CheckResult.fail(name, "agent reports " + detail, fix))
    return results


async def probe_printers(config: AgentConfig) -> list[CheckResult]:
    """Ask each printer for its status directly (DLE EOT), the agent not running."""
    results = []
    for device in config.devices:
        if device.kind != "printer":
            continue
        name = f"printer {device.id}"
        fix = DOWN_FIX["printer"].format(id=device.id)
        link: Link | None = None
        try:
            if device.transport == "tcp":
                link = await TcpLink.open(device.host, device.port, device.connect_timeout_s)
            else:
                link = await SerialLink.open(device)
        except LinkLost as exc:
            results.append(CheckResult.fail(name, str(exc), fix))
            continue
        session = PrinterSession(link, on_asb=lambda _: None, on_junk=lambda _: None)
        try:
            status = await session.poll(STATUS_TIMEOUT_S)
        except (TimeoutError, Exception) as exc:  # junk or silence: not an ESC/POS answer
            results.append(
                CheckResult.fail(
                    name,
                    f"{link.describe}: no status answer ({exc!r})",
                    "is it an ESC/POS printer, and the right port?",
                )
            )
        else:
            if status.condition == "ok":
                results.append(CheckResult.ok(name, f"{link.describe} online, ready"))
            else:
                results.append(
                    CheckResult.fail(
                        name,
                        f"{link.describe}: {status.condition}",
                        "load paper / close the cover / clear the jam",
                    )
                )
        finally:
            with contextlib.suppress(Exception):
                await session.close()
    return results


async def probe_mirrors(config: AgentConfig) -> list[CheckResult]:
    """Each mDNS mirror is announced on the chosen interfaces."""
    mirrors = [d for d in config.devices if d.kind == "mirror" and d.transport == "mdns"]
    if not mirrors:
        return []
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    from agent.devices.mirror.discovery import MirrorDiscovery
    from protocol.mirror_api import SERVICE_TYPE

    results = []
    interfaces: Any = sorted({i for m in mirrors for i in (m.mdns_interfaces or [])})
    try:
        zc = AsyncZeroconf(
            interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
    except OSError as exc:
        return [
            CheckResult.fail(
                "mDNS",
                f"cannot open multicast sockets: {exc}",
                "check mdns_interfaces are this box's LAN addresses",
            )
        ]
    try:
        discovery = MirrorDiscovery(zc, SERVICE_TYPE)
        async with discovery:
            for mirror in mirrors:
                wanted = mirror.mirror_id or mirror.id
                found = await discovery.wait_for(wanted, MDNS_TIMEOUT_S)
                name = f"mirror {mirror.id}"
                if found is None:
                    results.append(
                        CheckResult.fail(
                            name, f"{wanted} not announced on mDNS", DOWN_FIX["mirror"]
                        )
                    )
                else:
                    results.append(CheckResult.ok(name, f"announced at {found.url}"))
    finally:
        await asyncio.shield(zc.async_close())
    return results
