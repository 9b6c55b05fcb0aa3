"""Maps a device's (kind, transport) to its driver class: a table, not an if-chain."""

import importlib
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agent.config import ScanSection
from agent.devices.base import Driver, EventSink


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What the agent offers drivers beyond their config; each takes what it names.

    A driver asks for an item by having a keyword-only parameter of the same name.
    """

    state_dir: Path | None = None
    zeroconf: Any = None  # one AsyncZeroconf per agent, shared by every mDNS driver
    scan: ScanSection | None = None  # [scan]: every scanner driver routes scans the same way


# "module:Class" so a driver's dependencies load only when a store declares that device.
DRIVERS: dict[tuple[str, str], str] = {
    ("scanner", "serial"): "agent.devices.scanner.serial_driver:SerialScanner",
    ("scanner", "tcp"): "agent.devices.scanner.tcp_driver:TcpScanner",
    ("scanner", "hid"): "agent.devices.scanner.hid_driver:HidScanner",
    ("printer", "tcp"): "agent.devices.printer.driver:TcpPrinter",
    ("printer", "serial"): "agent.devices.printer.driver:SerialPrinter",
    ("mirror", "mdns"): "agent.devices.mirror.driver:MirrorDriver",
    ("mirror", "http"): "agent.devices.mirror.driver:MirrorDriver",
}


def build_driver(config: Any, sink: EventSink, context: DeviceContext | None = None) -> Driver:
    """Instantiate the driver for one `[[devices]]` entry, with the context it asks for."""
    target = DRIVERS[(config.kind, config.transport)]
    module_name, class_name = target.split(":")
    driver_class = getattr(importlib.import_module(module_name), class_name)
    wanted = inspect.signature(driver_class).parameters
    extras = {
        item.name: getattr(context, item.name)
        for item in fields(DeviceContext)
        if context is not None and item.name in wanted and getattr(context, item.name) is not None
    }
    driver: Driver = driver_class(config, sink, **extras)
    return driver
