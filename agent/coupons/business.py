"""The last good business config: kept in the state dir, refreshed from the cloud by a loop.

The local file owns the hardware and the cloud owns the business (DESIGN.md): this file is
only ever written from a config the cloud sent and that validated, so after a restart with
the cloud down the store still knows every key and policy it knew before.
"""

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from agent.coupons.errors import CloudUnreachable
from agent.coupons.remote import CouponCloud
from protocol.coupon_events import BusinessConfig, CampaignPolicy
from protocol.coupons import TrustedKey, keyring

log = logging.getLogger(__name__)

CONFIG_FILE = "business_config.json"
# Fetch retry after a failure: exponential with jitter, up to the normal poll interval.
RETRY_INITIAL_S = 1.0
RETRY_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """A validated config with what verification needs, derived once."""

    config: BusinessConfig
    etag: str | None
    keys: dict[int, TrustedKey]
    campaigns: dict[int, CampaignPolicy]


class ConfigState(StrEnum):
    """NONE: never had a config; CURRENT: the cloud confirmed it lately; STALE: kept offline."""

    NONE = "none"
    CURRENT = "current"
    STALE = "stale"


class BusinessConfigStore:
    """The active config and its file; `replace` writes the file before switching to it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CONFIG_FILE
        self.active: ActiveConfig | None = None
        self.state = ConfigState.NONE
        self.load_error: str | None = None

    def load(self) -> None:
        """Read the saved config, if any (blocking: call off the loop); a bad file is ignored."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            self.load_error = f"cannot read {self.path}: {exc}"
            log.error("%s", self.load_error)
            return
        try:
            etag, _, body = text.partition("\n")
            self.active = _activate(BusinessConfig.model_validate_json(body), etag or None)
        except (ValidationError, ValueError) as exc:
            self.load_error = f"{self.path}: unreadable saved config ({exc}); waiting for the cloud"
            log.error("%s", self.load_error)
            return
        self.state = ConfigState.STALE

    def replace(self, config: BusinessConfig, etag: str | None) -> None:
        """Persist `config` (atomically, fsynced) and make it active (blocking: off the loop)."""
        active = _activate(config, etag)  # ValueError for a key that does not decode
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write((etag or "") + "\n" + config.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self.active = active
        self.state = ConfigState.CURRENT


class ConfigPoller:
    """Fetches the config every `interval_s` (If-None-Match), backing off after failures."""

    def __init__(self, store: BusinessConfigStore, cloud: CouponCloud, interval_s: float) -> None:
        self._store = store
        self._cloud = cloud
        self._interval = interval_s
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
        try:
            config, etag = await self._cloud.fetch_config(active.etag if active else None)
            if config is not None:
                await asyncio.to_thread(self._store.replace, config, etag)
                log.info("business config %s: %d campaigns", config.version,
                         len(config.coupons.campaigns))  # fmt: skip
            elif self._store.active is not None:
                self._store.state = ConfigState.CURRENT
        except (CloudUnreachable, ValueError, OSError) as exc:
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
        return self._interval * self._rng.uniform(0.9, 1.1)


def _activate(config: BusinessConfig, etag: str | None) -> ActiveConfig:
    campaigns = {c.campaign_id: c for c in config.coupons.campaigns}
    return ActiveConfig(config, etag, keyring(config.coupons), campaigns)
