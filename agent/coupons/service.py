"""Everything coupons need in one agent: config store and poller, flow, POS API, housekeeping."""

import asyncio
import logging
import random
import time
from pathlib import Path

from agent.config import AgentConfig
from agent.coupons import ledger
from agent.coupons.business import BusinessConfigStore, ConfigState
from agent.coupons.flow import CouponFlow, VoucherPrinter
from agent.coupons.pos_api import serve_pos
from agent.coupons.remote import CouponCloud
from agent.outbox import Outbox
from agent.remote_config.applier import ConfigApplier
from agent.remote_config.poller import ConfigPoller
from agent.sync.client import Credentials
from agent.tls import client_ssl_context
from protocol.events import DeviceState
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

HEALTH_ID = "coupons"  # how the coupon service appears among the heartbeat's devices
SWEEP_INTERVAL_S = 30.0
# A POS port taken by another program is retried with this backoff; scanners keep redeeming.
POS_RETRY_INITIAL_S = 1.0
POS_RETRY_MAX_S = 60.0  # staff timeouts are noticed at least this often
PRUNE_INTERVAL_S = 6 * 3600.0
_HEALTH_STATE: dict[ConfigState, DeviceState] = {
    ConfigState.CURRENT: "online",
    ConfigState.STALE: "degraded",
    ConfigState.NONE: "offline",
}


class CouponService:
    """Owns the coupon flow of one agent; `run` until cancelled."""

    def __init__(
        self,
        config: AgentConfig,
        credentials: Credentials,
        outbox: Outbox,
        state_dir: Path,
        printer: VoucherPrinter | None = None,
    ) -> None:
        self._settings = config.coupons
        self._pos = config.pos
        self.store = BusinessConfigStore(state_dir)
        self.cloud = CouponCloud(credentials, client_ssl_context(config.cloud.ca_bundle))
        devices = {device.id: device.kind for device in config.devices}
        self.applier = ConfigApplier(self.store, devices, config.scan)
        self.poller = ConfigPoller(
            self.store, self.cloud, self._settings.config_poll_interval_s, self.applier
        )
        self.flow = CouponFlow(
            outbox, credentials.store_id, self.store, self._settings, self.cloud, printer
        )
        self._outbox = outbox
        self.pos_url: str | None = None
        self.ready = asyncio.Event()  # set once the saved config is loaded

    async def restore(self) -> None:
        """Load the saved config and hand it to its consumers (before the drivers start)."""
        await asyncio.to_thread(self.store.load)
        self.applier.restore()
        self.ready.set()

    async def run(self) -> None:
        """Load the saved config, then poll the cloud, sweep and serve the POS; until cancelled."""
        if not self.ready.is_set():
            await self.restore()
        try:
            await asyncio.gather(self.poller.run(), self._housekeeping(), self._serve_pos())
        finally:
            await self.cloud.close()

    def health(self) -> DeviceHealth:
        """The coupon service as a heartbeat entry: config state and the flow's counters."""
        active = self.store.active
        detail = f"config {active.config.version}" if active else self.store.load_error
        counters = {k[:64]: v for k, v in self.flow.counters.items()}
        counters["config_fetch_failures"] = self.poller.failures
        return DeviceHealth(
            device_id=HEALTH_ID,
            kind="coupons",
            state=_HEALTH_STATE[self.store.state],
            condition=f"config_{self.store.state.value}",
            detail=detail[:512] if detail else None,
            counters=counters,
        )

    async def _serve_pos(self) -> None:
        """Serve the POS API; a port that cannot be bound is retried, never fatal to coupons."""
        if self._pos is None:
            return
        attempt = 0
        while True:
            try:
                async with serve_pos(self._pos, self.flow) as runner:
                    host, port = runner.addresses[0][:2]
                    self.pos_url = f"http://{host}:{port}"
                    log.info("POS coupon API on %s", self.pos_url)
                    attempt = 0
                    await asyncio.Event().wait()  # until cancelled
            except OSError as exc:
                self.flow.counters["pos_bind_failures"] += 1
                delay = min(POS_RETRY_MAX_S, POS_RETRY_INITIAL_S * 2**attempt)
                attempt += 1
                log.error("POS API cannot listen on %s:%d (%s); retry in %.0fs",
                          self._pos.host, self._pos.port, exc, delay)  # fmt: skip
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _housekeeping(self) -> None:
        pruned_at = 0.0
        while True:
            await self.flow.sweep()
            if time.monotonic() - pruned_at >= PRUNE_INTERVAL_S:
                pruned_at = time.monotonic()
                removed = await ledger.prune(self._outbox, time.time())
                if removed:
                    log.info("coupon ledger: pruned %d expired rows", removed)
            await asyncio.sleep(SWEEP_INTERVAL_S)
