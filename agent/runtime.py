"""`storeedge agent run`: outbox, drivers, drain and heartbeats, stopped cleanly on SIGTERM."""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.coupons.service import CouponService
from agent.coupons.sink import CouponSink
from agent.credentials import CredentialsWatch
from agent.devices.base import Driver, EventSink
from agent.devices.registry import DeviceContext, build_driver
from agent.liveness import Pulse
from agent.logs import register_secret
from agent.notify import Notifier
from agent.outbox import Identity, Outbox
from agent.recent import RecentEvents, TappedSink
from agent.remote_config.applier import ScanConsumer
from agent.snapshot import snapshot, status_line
from agent.supervise import supervise
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from agent.sync.heartbeat import HeartbeatLoop
from agent.tls import client_ssl_context
from agent.watchdog import Watchdog
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"
# `agent run` exits with this after re-enrollment gave it another identity: systemd's
# Restart= starts it again under the new one (EX_TEMPFAIL, sysexits.h).
EXIT_NEW_IDENTITY = 75


class AgentRuntime:
    """Everything one agent process runs; `run` returns after `stop` is set and all is closed."""

    def __init__(
        self, config: AgentConfig, credentials: Credentials, notifier: Notifier | None = None
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.outbox: Outbox | None = None
        self.drivers: list[Driver] = []
        self.drain: DrainWorker | None = None
        self.heartbeat: HeartbeatLoop | None = None
        self.coupons: CouponService | None = None
        self.mirror_discovery: Any = None  # MirrorAutoAttach when [discovery] mirrors = "auto"
        self.started = asyncio.Event()
        self.started_at: float | None = None
        self.notifier = notifier or Notifier(None)
        self.recent = RecentEvents()
        self.watchdog: Watchdog | None = None
        self.client: IngestClient | None = None
        self.status_page_url: str | None = None
        self.exit_code = 0

    def pulses(self) -> list[Pulse]:
        """The liveness pulse of every loop that has one (drivers opt in with `.pulse`)."""
        loops: list[Any] = [self.drain, self.heartbeat, *self.drivers]
        return [p for loop in loops if isinstance(p := getattr(loop, "pulse", None), Pulse)]

    def driver(self, device_id: str) -> Driver | None:
        """The running driver of `device_id`, if configured."""
        return next((d for d in self.drivers if d.device_id == device_id), None)

    async def status_line(self) -> str:
        """The one-line summary sent as STATUS= to systemd."""
        return status_line(await snapshot(self))

    def device_health(self) -> list[DeviceHealth]:
        """Every driver's current health, in config order, then the coupon service's."""
        health = [driver.health() for driver in self.drivers]
        if self.coupons is not None:
            health.append(self.coupons.health())
        return health

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
        client = IngestClient(
            self.credentials,
            timeout_s=cloud.request_timeout_s,
            ssl_context=client_ssl_context(cloud.ca_bundle),
        )
        self.client = client
        self.drain = DrainWorker(
            outbox,
            client,
            max_events=cloud.batch_max_events,
            max_bytes=cloud.batch_max_bytes,
            backoff_base_s=cloud.backoff_base_s,
            backoff_cap_s=cloud.backoff_cap_s,
        )
        voucher = self._submit_voucher if self.config.coupons.voucher_printer else None
        self.coupons = CouponService(self.config, self.credentials, outbox, state_dir, voucher)
        self.heartbeat = HeartbeatLoop(
            outbox, client, self.drain, self.device_health, cloud.heartbeat_interval_s,
            config_report=self.coupons.applier.report,
        )  # fmt: skip
        zeroconf = _zeroconf_for(self.config)
        context = DeviceContext(state_dir=state_dir, zeroconf=zeroconf, scan=self.config.scan)
        # Drivers capture through the coupon sink (coupon scans, staff badges and mirror coupon
        # claims reach the coupon flow once their own event is durable), behind a tap so the
        # status page sees scans once they are durable.
        sink = TappedSink(CouponSink(outbox, self.coupons.flow), self.recent)
        self.drivers = [build_driver(device, sink, context) for device in self.config.devices]
        for driver in self.drivers:
            if isinstance(driver, ScanConsumer):  # remote scan rules, taken without a reconnect
                self.coupons.applier.add_scanner(driver)
        self.coupons.applier.on_change = self.heartbeat.wake  # the console hears of it now
        await self.coupons.restore()
        self.watchdog = Watchdog(
            self.notifier, self.pulses, self.status_line, self.config.agent.stall_timeout_s
        )
        watch = CredentialsWatch(
            state_dir, self.credentials, lambda c: self._new_credentials(c, stop)
        )
        tasks = [
            asyncio.create_task(supervise("drain", self.drain.run, self.drain.pulse), name="drain"),
            asyncio.create_task(
                supervise("heartbeat", self.heartbeat.run, self.heartbeat.pulse), name="heartbeat"
            ),
            asyncio.create_task(supervise("coupons", self.coupons.run), name="coupons"),
            *(
                asyncio.create_task(
                    supervise(d.device_id, d.run, getattr(d, "pulse", None)), name=d.device_id
                )
                for d in self.drivers
            ),
            asyncio.create_task(supervise("credentials", watch.run), name="credentials"),
        ]
        if zeroconf is not None and self.config.discovery.mirrors == "auto":
            tasks.append(self._discover_mirrors(sink, zeroconf, state_dir, tasks))
        page = None
        if self.config.status_page.enabled:
            from agent.status_page import start_status_page

            try:
                page = await start_status_page(self)
                self.status_page_url = page.url
            except OSError as exc:  # the port is taken: run without the page, say so
                log.error("status page disabled: cannot listen: %s", exc)
        log.info(
            "agent %s (store %s) running with %d devices",
            self.credentials.agent_id,
            self.credentials.store_id,
            len(self.drivers),
        )
        self.started_at = time.time()
        self.started.set()
        self.notifier.ready(await self.status_line())
        # Fed only from READY on: systemd's watchdog deadline starts there.
        tasks.append(asyncio.create_task(supervise("watchdog", self.watchdog.run), name="watchdog"))
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            self.notifier.stopping()
            if page is not None:
                await page.close()
            while running := [task for task in tasks if not task.done()]:
                for task in running:  # discovery may have attached a driver meanwhile
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            await client.close()
            if zeroconf is not None:
                await zeroconf.async_close()
            await outbox.close()
            self.notifier.close()
            log.info("stopped")

    def _new_credentials(self, new: Credentials, stop: asyncio.Event) -> None:
        """Credentials changed on disk: take a new token at once; a new identity needs a restart."""
        old = self.credentials
        if (new.agent_id, new.store_id, new.cloud_url) != (
            old.agent_id,
            old.store_id,
            old.cloud_url,
        ):
            log.warning(
                "re-enrolled as agent %s of store %s; restarting to take the new identity",
                new.agent_id,
                new.store_id,
            )
            self.exit_code = EXIT_NEW_IDENTITY
            stop.set()
            return
        self.credentials = new
        register_secret(new.token)
        if self.client is not None:
            self.client.set_token(new.token)
        log.info("new token loaded from the credentials file; retrying the cloud now")
        for loop in (self.drain, self.heartbeat):
            if loop is not None:
                loop.wake()

    def _discover_mirrors(
        self, sink: EventSink, zeroconf: Any, state_dir: Path, tasks: "list[asyncio.Task[None]]"
    ) -> "asyncio.Task[None]":
        """Attach every announced mirror as a device (docs/MIRRORS.md, "Found on the LAN")."""
        from agent.devices.mirror.autoattach import MirrorAutoAttach

        def attach(driver: Driver) -> None:
            self.drivers.append(driver)
            run = supervise(driver.device_id, driver.run, getattr(driver, "pulse", None))
            tasks.append(asyncio.create_task(run, name=driver.device_id))

        mirrors = [d for d in self.config.devices if d.kind == "mirror"]
        self.mirror_discovery = MirrorAutoAttach(
            self.config.discovery,
            sink,
            attach,
            zeroconf=zeroconf,
            state_dir=state_dir,
            declared_mirrors=frozenset(getattr(d, "mirror_id", None) or d.id for d in mirrors),
            taken_device_ids=frozenset(d.id for d in self.config.devices),
        )
        run = supervise("mirror-discovery", self.mirror_discovery.run)
        return asyncio.create_task(run, name="mirror-discovery")

    async def _submit_voucher(self, job_id: str, template: str, fields: Mapping[str, Any]) -> Any:
        """Queue a voucher on the configured printer (its queue makes job_id idempotent)."""
        wanted = self.config.coupons.voucher_printer
        for driver in self.drivers:
            if driver.device_id == wanted:
                return await driver.submit_template(job_id, template, fields)  # type: ignore[attr-defined]
        raise LookupError(f"voucher printer {wanted!r} is not running")


async def run_until_signalled(config: AgentConfig, credentials: Credentials) -> int:
    """Run the agent until SIGTERM or SIGINT, telling systemd (if it listens); the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    runtime = AgentRuntime(config, credentials, Notifier.from_env())
    await runtime.run(stop)
    return runtime.exit_code


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
