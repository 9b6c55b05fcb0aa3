"""`[discovery] mirrors = "auto"`: every mirror the LAN announces becomes a device of its own.

A mirror is attached once, under the stable device id `<mirror_device_prefix><TXT id>`, and
stays attached when it goes quiet (its driver then reports it offline / not_found, as for a
declared one). Mirrors declared under [[devices]] are left to their own drivers.
"""

import fnmatch
import logging
import re
from collections.abc import Callable
from pathlib import Path

from zeroconf.asyncio import AsyncZeroconf

from agent.config import DiscoverySection, MirrorConfig
from agent.devices.base import Driver, EventSink
from agent.devices.mirror.discovery import MirrorDiscovery
from agent.devices.mirror.driver import MirrorDriver
from protocol.mirror_api import SERVICE_TYPE

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")  # protocol.base.Id: device ids go on the wire
COUNTERS = ("attached", "not_allowed", "over_limit", "bad_device_id")


class MirrorAutoAttach:
    """Browses mirror adverts; each new allowed id gets a MirrorDriver, handed to `attach`."""

    def __init__(
        self,
        section: DiscoverySection,
        sink: EventSink,
        attach: Callable[[Driver], None],
        *,
        zeroconf: AsyncZeroconf,
        state_dir: Path | None = None,
        declared_mirrors: frozenset[str] = frozenset(),
        taken_device_ids: frozenset[str] = frozenset(),
        service_type: str = SERVICE_TYPE,
    ) -> None:
        self._section = section
        self._sink = sink
        self._attach = attach
        self._zeroconf = zeroconf
        self._state_dir = state_dir
        self._declared = declared_mirrors  # TXT ids a [[devices]] entry already follows
        self._taken = set(taken_device_ids)
        self._service_type = service_type
        self.attached: dict[str, MirrorDriver] = {}  # TXT id → its driver
        self._refused: set[str] = set()  # said once per id, not at every announcement
        self.counters = dict.fromkeys(COUNTERS, 0)

    async def run(self) -> None:
        """Browse until cancelled, attaching mirrors as they are announced."""
        async with MirrorDiscovery(self._zeroconf, self._service_type) as discovery:
            while True:
                changed = discovery.next_change()  # before looking: no announcement slips by
                for mirror_id in sorted(discovery.mirrors()):
                    self._consider(mirror_id)
                await changed.wait()

    def _consider(self, mirror_id: str) -> None:
        if mirror_id in self.attached or mirror_id in self._declared:
            return
        if mirror_id in self._refused:
            return
        device_id = self._section.mirror_device_prefix + mirror_id
        if not any(fnmatch.fnmatchcase(mirror_id, p) for p in self._section.mirror_ids):
            self._refuse(mirror_id, "not_allowed", "not in [discovery] mirror_ids")
        elif not _ID.match(device_id) or device_id in self._taken:
            self._refuse(mirror_id, "bad_device_id", f"device id {device_id!r} invalid or taken")
        elif len(self.attached) >= self._section.max_mirrors:
            self._refuse(mirror_id, "over_limit", f"over max_mirrors={self._section.max_mirrors}")
        else:
            config = MirrorConfig(
                id=device_id, kind="mirror", transport="mdns", mirror_id=mirror_id
            )
            driver = MirrorDriver(
                config,
                self._sink,
                state_dir=self._state_dir,
                zeroconf=self._zeroconf,
                service_type=self._service_type,
            )
            self.attached[mirror_id] = driver
            self._taken.add(device_id)
            self.counters["attached"] += 1
            log.info("discovery: mirror %s attached as device %s", mirror_id, device_id)
            self._attach(driver)

    def _refuse(self, mirror_id: str, counter: str, why: str) -> None:
        self._refused.add(mirror_id)
        self.counters[counter] += 1
        log.warning("discovery: mirror %s announced but not attached: %s", mirror_id, why)
