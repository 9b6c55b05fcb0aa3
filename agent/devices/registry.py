"""Maps a device's (kind, transport) to its driver class: a table, not an if-chain."""

import importlib
from typing import Any

from agent.devices.base import Driver, EventSink

# "module:Class" so a driver's dependencies load only when a store declares that device.
DRIVERS: dict[tuple[str, str], str] = {
    ("scanner", "serial"): "agent.devices.scanner.serial_driver:SerialScanner",
    ("printer", "tcp"): "agent.devices.printer.driver:TcpPrinter",
    ("printer", "serial"): "agent.devices.printer.driver:SerialPrinter",
    ("mirror", "mdns"): "agent.devices.mirror.driver:MirrorDriver",
    ("mirror", "http"): "agent.devices.mirror.driver:MirrorDriver",
}


def build_driver(config: Any, sink: EventSink) -> Driver:
    """Instantiate the driver for one `[[devices]]` entry."""
    target = DRIVERS[(config.kind, config.transport)]
    module_name, class_name = target.split(":")
    driver_class = getattr(importlib.import_module(module_name), class_name)
    driver: Driver = driver_class(config, sink)
    return driver
