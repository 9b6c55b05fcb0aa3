"""Periodic heartbeats: backlog, losses, device states and the agent's clock offset."""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from agent import __version__
from agent.errors import SyncError
from agent.liveness import Pulse
from agent.outbox import Outbox, oldest_age_s
from agent.sync.backoff import SLOW_RETRY_S
from agent.sync.client import IngestClient, RetryableError, UnauthorizedError
from agent.sync.drain import DrainWorker
from protocol.settings import ConfigRefusal
from protocol.wire import DeviceHealth, Heartbeat

log = logging.getLogger(__name__)

# ±10 % jitter so a fleet restarted together does not heartbeat in lockstep.
JITTER = 0.1


class ConfigReportLike(Protocol):
    """The business config in force (agent.remote_config.applier.ConfigReport)."""

    @property
    def version(self) -> int | None: ...
    @property
    def config_hash(self) -> str | None: ...
    @property
    def error(self) -> ConfigRefusal | None: ...


class HeartbeatLoop:
    """Sends a Heartbeat every `interval_s`; measures clock offset from the cloud's answer."""

    def __init__(
        self,
        outbox: Outbox,
        client: IngestClient,
        drain: DrainWorker,
        devices: Callable[[], list[DeviceHealth]],
        interval_s: float = 30.0,
        config_report: Callable[[], ConfigReportLike] | None = None,
    ) -> None:
        self._outbox = outbox
        self._config_report = config_report
        self._client = client
        self._drain = drain
        self._devices = devices
        self._interval = interval_s
        self.clock_offset_s: float | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        # Wall-clock time the cloud first refused our token, until it accepts one again.
        self.unauthorized_since: float | None = None
        self.pulse = Pulse("heartbeat")
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed beat waits for the next (or for Retry-After)."""
        try:
            await self._run()
        finally:
            self.pulse.park()

    def wake(self) -> None:
        """Beat now rather than at the next interval (new credentials)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            delay = self._interval * random.uniform(1 - JITTER, 1 + JITTER)
            self.pulse.beat(self._client.timeout_s)
            try:
                await self.beat()
            except UnauthorizedError as exc:
                # A revoked token does not heal by itself: ask rarely, like the drain does.
                if self.unauthorized_since is None:
                    self.unauthorized_since = time.time()
                    log.error("cloud refused this agent's token: %s; still buffering", exc)
                self.last_error = str(exc)
                delay = max(delay, SLOW_RETRY_S)
            except RetryableError as exc:
                self.last_error = str(exc)
                delay = max(delay, exc.retry_after or 0.0)
                log.info("heartbeat failed: %s", exc)
            except SyncError as exc:
                self.last_error = str(exc)
                log.warning("heartbeat refused: %s", exc)
            self.pulse.beat(delay)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def beat(self) -> None:
        """Send one heartbeat now."""
        heartbeat = await self.build()
        sent = time.time()
        response = await self._client.post_heartbeat(heartbeat)
        received = time.time()
        # NTP-style: the cloud stamped its clock roughly halfway through the round trip.
        server = response.server_time.timestamp()
        self.clock_offset_s = round(server - (sent + received) / 2, 3)
        self.last_ok_at = received
        self.last_error = None
        if self.unauthorized_since is not None:
            log.warning("cloud accepts this agent's token again")
        self.unauthorized_since = None

    async def build(self) -> Heartbeat:
        """The heartbeat as it would be sent now."""
        stats = await self._outbox.stats()
        counters = self._drain.counters
        last_sync = counters.last_sync_at
        config = self._config_report() if self._config_report is not None else None
        return Heartbeat(
            sent_at=datetime.now(UTC),
            version=__version__,
            backlog_events=stats.backlog_events,
            backlog_bytes=stats.backlog_bytes,
            oldest_unsynced_age_s=oldest_age_s(stats),
            dead_letters=stats.dead_letters,
            outbox_over_cap=stats.over_cap,
            losses=stats.losses,
            devices=self._devices(),
            clock_offset_s=self.clock_offset_s,
            last_sync_at=datetime.fromtimestamp(last_sync, UTC) if last_sync else None,
            next_seq=stats.next_seq,
            sync_state=self._drain.state.value,
            config_version=config.version if config is not None else None,
            config_hash=config.config_hash if config is not None else None,
            config_error=config.error if config is not None else None,
            alerts=[alert[:300] for alert in self._outbox.alerts()],
        )
