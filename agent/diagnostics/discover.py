"""`storeedge agent discover`: what is plugged in and what answers on the store LAN.

Serial ports by their stable /dev/serial/by-id names with the vendor behind the USB id;
keyboard-wedge scanners by /dev/input/by-id; mirrors and network printers by mDNS; and only
when asked, a bounded scan of one port (9100) on the box's own subnet.
"""

import asyncio
import contextlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERIAL_BY_ID = Path("/dev/serial/by-id")
INPUT_BY_ID = Path("/dev/input/by-id")
# USB vendor ids seen in stores (hardware/udev/99-storeedge.rules and research/devices.md).
VENDORS = {
    0x05E0: "Zebra/Symbol",
    0x0C2E: "Honeywell",
    0x05F9: "Datalogic",
    0x1EAB: "Newland",
    0x04B8: "Epson",
    0x0519: "Star",
    0x1504: "Bixolon",
    0x1D90: "Citizen",
    0x1A86: "QinHeng CH340 adapter",
    0x067B: "Prolific PL2303 adapter",
    0x0403: "FTDI adapter",
    0x10C4: "Silicon Labs CP210x adapter",
}
MDNS_TYPES = {
    "_storeedge-mir._tcp.local.": "mirror",
    "_pdl-datastream._tcp.local.": "printer (raw 9100)",
}
MDNS_BROWSE_S = 3.0
# A /22 is 1,022 hosts: a store LAN. Anything larger is refused rather than swept.
MAX_SCAN_HOSTS = 1022
SCAN_CONCURRENCY = 64
CONNECT_TIMEOUT_S = 0.5
STATUS_TIMEOUT_S = 1.0
DLE_EOT_PRINTER = b"\x10\x04\x01"


class DiscoverError(Exception):
    """The scan asked for is not one we do (too large, not local)."""


@dataclass(frozen=True, slots=True)
class Found:
    """One thing found: where, what it seems to be, and a config hint."""

    source: str  # serial | hid | mdns | scan
    address: str
    what: str
    hint: str = ""


def serial_ports(by_id: Path = SERIAL_BY_ID) -> list[Found]:
    """Each /dev/serial/by-id link, with the vendor its USB id names."""
    info = _comports()
    found = []
    for link in sorted(by_id.glob("*")) if by_id.is_dir() else []:
        target = os.path.realpath(link)
        port = info.get(target)
        vid = getattr(port, "vid", None)
        vendor = VENDORS.get(vid, "") if vid is not None else ""
        product = getattr(port, "product", None) or getattr(port, "description", None) or ""
        usb_id = f"[{vid:04x}:{getattr(port, 'pid', 0) or 0:04x}]" if vid is not None else ""
        what = " ".join(part for part in (vendor, product, usb_id) if part)
        found.append(
            Found(
                "serial",
                str(link),
                f"{what or 'serial device'} → {target}",
                f'transport = "serial"\nport = "{link}"',
            )
        )
    return found


def hid_scanners(by_id: Path = INPUT_BY_ID) -> list[Found]:
    """Keyboard interfaces by id (a wedge scanner is one of them)."""
    found = []
    for link in sorted(by_id.glob("*-event-kbd")) if by_id.is_dir() else []:
        found.append(
            Found(
                "hid",
                str(link),
                "keyboard (a wedge scanner, or a real keyboard)",
                f'transport = "hid"\npath = "{link}"',
            )
        )
    return found


def _comports() -> dict[str, Any]:
    try:
        from serial.tools import list_ports
    except ImportError:  # pragma: no cover - pyserial always ships it
        return {}
    return {os.path.realpath(p.device): p for p in list_ports.comports()}


async def mdns_services(
    types: dict[str, str] | None = None, seconds: float = MDNS_BROWSE_S, interfaces: Any = None
) -> list[Found]:
    """Services of `types` announced within `seconds`."""
    from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    types = types or MDNS_TYPES
    zc = AsyncZeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
    names: list[tuple[str, str]] = []

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        del zeroconf
        if state_change is ServiceStateChange.Added:
            names.append((service_type, name))

    browser = AsyncServiceBrowser(zc.zeroconf, list(types), handlers=[on_change])
    found = []
    try:
        await asyncio.sleep(seconds)
        for service_type, name in names:
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(zc.zeroconf, 1000):
                continue
            addresses = info.parsed_addresses()
            where = f"{addresses[0]}:{info.port}" if addresses else name
            txt = {
                k.decode(): (v or b"").decode("utf-8", "replace")
                for k, v in (info.properties or {}).items()
            }
            label = types[service_type]
            hint = ""
            if label == "mirror" and txt.get("id"):
                hint = f'kind = "mirror"\ntransport = "mdns"\nmirror_id = "{txt["id"]}"'
            found.append(
                Found("mdns", where, f"{label}: {name.removesuffix('.' + service_type)}", hint)
            )
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return found


def local_subnets() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this box's non-loopback interfaces."""
    import ifaddr

    nets = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                net = ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False)
                if not net.is_loopback and isinstance(net, ipaddress.IPv4Network):
                    nets.append(net)
    return sorted(set(nets))


def scan_targets(subnets: list[ipaddress.IPv4Network]) -> list[str]:
    """Hosts to try, refusing any subnet over MAX_SCAN_HOSTS or outside private ranges."""
    hosts: list[str] = []
    for net in subnets:
        if not (net.is_private or net.is_loopback):
            raise DiscoverError(f"{net} is not a local (private) network; not scanning it")
        count = max(1, net.num_addresses - 2)
        if count > MAX_SCAN_HOSTS:
            raise DiscoverError(
                f"{net} has {count} hosts (limit {MAX_SCAN_HOSTS}); pass a smaller --subnet"
            )
        hosts.extend(str(h) for h in (net.hosts() if net.num_addresses > 2 else [net[0]]))
    return hosts


async def scan_port(hosts: list[str], port: int) -> list[Found]:
    """Try `port` on each host (bounded concurrency); those that answer DLE EOT are ESC/POS."""
    gate = asyncio.Semaphore(SCAN_CONCURRENCY)

    async def probe(host: str) -> Found | None:
        async with gate:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                return None
            try:
                writer.write(DLE_EOT_PRINTER)
                await writer.drain()
                async with asyncio.timeout(STATUS_TIMEOUT_S):
                    reply = await reader.read(1)
            except (OSError, TimeoutError):
                reply = b""
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            # Every DLE EOT reply matches 0xx1xx10 (research/devices.md §2.3).
            escpos_reply = len(reply) == 1 and reply[0] & 0b10010011 == 0b00010010
            what = (
                "ESC/POS printer (answered DLE EOT)"
                if escpos_reply
                else "open port, no ESC/POS reply"
            )
            hint = f'kind = "printer"\ntransport = "tcp"\nhost = "{host}"\nport = {port}'
            return Found("scan", f"{host}:{port}", what, hint if escpos_reply else "")

    results = await asyncio.gather(*(probe(h) for h in hosts))
    return [r for r in results if r is not None]
