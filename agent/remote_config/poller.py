"""Fetch the business config on an interval (If-None-Match), backing off after failures."""

import asyncio
import logging
import random
import time

from agent.coupons.business import BusinessConfigStore, ConfigState
from agent.coupons.errors import CloudUnreachable, UnreadableConfig
from agent.coupons.remote import CouponCloud
from agent.remote_config.applier import ConfigApplier

log = logging.getLogger(__name__)

# Fetch retry after a failure: exponential with jitter, up to the normal poll interval.
RETRY_INITIAL_S = 1.0
RETRY_FACTOR = 2.0
# ±10 % on the interval, so a fleet restarted together does not poll in lockstep.
JITTER = 0.1


class ConfigPoller:
    """Fetches the config every `interval_s` and offers what is new to the applier."""

    def __init__(
        self,
        store: BusinessConfigStore,
        cloud: CouponCloud,
        interval_s: float,
        applier: ConfigApplier | None = None,
    ) -> None:
        self._store = store
        self._cloud = cloud
        self._interval = interval_s
        self.applier = applier or ConfigApplier(store)
        self._rng = random.Random()
        self.fetched = asyncio.Event()  # set after every successful fetch (tests, status)
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.failures = 0

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(await self.poll_once())

    async def poll_once(self) -> float:
        """One fetch; returns the seconds to wait before the next."""
        active = self._store.active
        good = active.etag if active else None
        try:
            # The refused config's tag too: the cloud answers 304 until it has a new one.
            config, etag = await self._cloud.fetch_config(good, self.applier.refused_etag)
            if config is not None:
                await self.applier.offer(config, etag)
            elif self._store.active is not None:
                self._store.state = ConfigState.CURRENT
                self.applier.confirmed(etag)
        except UnreadableConfig as exc:  # the cloud answered: a refusal, not an outage
            self.applier.refuse_unreadable(exc.etag, exc.reason)
            if self._store.active is not None:
                self._store.state = ConfigState.CURRENT
        except (CloudUnreachable, OSError) as exc:
            self.failures += 1
            self.last_error = str(exc)
            if self._store.state is ConfigState.CURRENT:
                self._store.state = ConfigState.STALE
            ceiling = min(self._interval, RETRY_INITIAL_S * RETRY_FACTOR ** min(self.failures, 32))
            log.info("business config fetch failed (%s); retry in ≤ %.0fs", exc, ceiling)
            return ceiling * self._rng.uniform(0.5, 1.0)
        self.failures = 0
        self.last_error = None
        self.last_ok_at = time.time()
        self.fetched.set()
        return self._interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
