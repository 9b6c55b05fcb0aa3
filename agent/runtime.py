"""`storeedge agent run`: outbox, drivers, drain and heartbeats, stopped cleanly on SIGTERM."""

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.devices.base import Driver
from agent.devices.registry import DeviceContext, build_driver
from agent.outbox import Identity, Outbox
from agent.supervise import supervise
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from agent.sync.heartbeat import HeartbeatLoop
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"


class AgentRuntime:
    """Everything one agent process runs; `run` returns after `stop` is set and all is closed."""

    def __init__(self, config: AgentConfig, credentials: Credentials) -> None:
        self.config = config
        self.credentials = credentials
        self.outbox: Outbox | None = None
        self.drivers: list[Driver] = []
        self.drain: DrainWorker | None = None
        self.heartbeat: HeartbeatLoop | None = None
        self.mirror_discovery: Any = None  # MirrorAutoAttach when [discovery] mirrors = "auto"
        self.started = asyncio.Event()

    def device_health(self) -> list[DeviceHealth]:
        """Every driver's current health, in config order."""
        return [driver.health() for driver in self.drivers]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; on return everything committed is on disk and closed."""
        state_dir = self.config.agent.state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        outbox = await Outbox.open(
            state_dir / OUTBOX_FILE,
            Identity(self.credentials.agent_id, self.credentials.store_id),
            max_bytes=self.config.agent.outbox_max_bytes,
            synchronous=self.config.agent.synchronous,
        )
        self.outbox = outbox
        cloud = self.config.cloud
        client = IngestClient(self.credentials, timeout_s=cloud.request_timeout_s)
        self.drain = DrainWorker(
            outbox,
            client,
            max_events=cloud.batch_max_events,
            max_bytes=cloud.batch_max_bytes,
            backoff_base_s=cloud.backoff_base_s,
            backoff_cap_s=cloud.backoff_cap_s,
        )
        self.heartbeat = HeartbeatLoop(
            outbox, client, self.drain, self.device_health, cloud.heartbeat_interval_s
        )
        zeroconf = _zeroconf_for(self.config)
        context = DeviceContext(state_dir=state_dir, zeroconf=zeroconf, scan=self.config.scan)
        self.drivers = [build_driver(device, outbox, context) for device in self.config.devices]
        tasks = [
            asyncio.create_task(supervise("drain", self.drain.run), name="drain"),
            asyncio.create_task(supervise("heartbeat", self.heartbeat.run), name="heartbeat"),
            *(
                asyncio.create_task(supervise(d.device_id, d.run), name=d.device_id)
                for d in self.drivers
            ),
        ]
        if zeroconf is not None and self.config.discovery.mirrors == "auto":
            tasks.append(self._discover_mirrors(outbox, zeroconf, state_dir, tasks))
        log.info(
            "agent %s (store %s) running with %d devices",
            self.credentials.agent_id,
            self.credentials.store_id,
            len(self.drivers),
        )
        self.started.set()
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            while running := [task for task in tasks if not task.done()]:
                for task in running:  # discovery may have attached a driver meanwhile
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            await client.close()
            if zeroconf is not None:
                await zeroconf.async_close()
            await outbox.close()
            log.info("stopped")

    def _discover_mirrors(
        self, outbox: Outbox, zeroconf: Any, state_dir: Path, tasks: "list[asyncio.Task[None]]"
    ) -> "asyncio.Task[None]":
        """Attach every announced mirror as a device (docs/MIRRORS.md, "Found on the LAN")."""
        from agent.devices.mirror.autoattach import MirrorAutoAttach

        def attach(driver: Driver) -> None:
            self.drivers.append(driver)
            run = supervise(driver.device_id, driver.run)
            tasks.append(asyncio.create_task(run, name=driver.device_id))

        mirrors = [d for d in self.config.devices if d.kind == "mirror"]
        self.mirror_discovery = MirrorAutoAttach(
            self.config.discovery,
            outbox,
            attach,
            zeroconf=zeroconf,
            state_dir=state_dir,
            declared_mirrors=frozenset(getattr(d, "mirror_id", None) or d.id for d in mirrors),
            taken_device_ids=frozenset(d.id for d in self.config.devices),
        )
        run = supervise("mirror-discovery", self.mirror_discovery.run)
        return asyncio.create_task(run, name="mirror-discovery")


async def run_until_signalled(config: AgentConfig, credentials: Credentials) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await AgentRuntime(config, credentials).run(stop)


def _zeroconf_for(config: AgentConfig) -> Any:
    """One AsyncZeroconf for every mDNS device, on the union of their interfaces (or all)."""
    mdns = [d for d in config.devices if getattr(d, "transport", None) == "mdns"]
    wanted = [getattr(d, "mdns_interfaces", None) for d in mdns]
    if config.discovery.mirrors == "auto":
        wanted.append(config.discovery.interfaces)
    if not wanted:
        return None
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    chosen: set[str] = set()
    for interfaces in wanted:
        if interfaces is None:
            return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
        chosen.update(interfaces)
    return AsyncZeroconf(interfaces=sorted(chosen), ip_version=IPVersion.V4Only)


def outbox_path(state_dir: Path) -> Path:
    """Where the outbox lives in the state dir."""
    return state_dir / OUTBOX_FILE
