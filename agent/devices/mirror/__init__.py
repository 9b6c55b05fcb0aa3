"""Smart mirrors: mDNS discovery, a sans-IO stream reader, and the driver that records events."""

from agent.devices.mirror.cursor import Cursor
from agent.devices.mirror.discovery import MirrorAddress, MirrorDiscovery
from agent.devices.mirror.driver import MirrorDriver
from agent.devices.mirror.errors import (
    MirrorError,
    MirrorProtocolError,
    MirrorRejectedError,
    MirrorUnavailableError,
)
from agent.devices.mirror.stream import MirrorStream, Step

__all__ = [
    "Cursor",
    "MirrorAddress",
    "MirrorDiscovery",
    "MirrorDriver",
    "MirrorError",
    "MirrorProtocolError",
    "MirrorRejectedError",
    "MirrorStream",
    "MirrorUnavailableError",
    "Step",
]
