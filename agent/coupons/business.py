"""The last good business config, kept in the state dir (agent/remote_config fetches it).

The local file owns the hardware and the cloud owns the business (DESIGN.md): this file is
only ever written from a config the cloud sent and that validated, so after a restart with
the cloud down the store still knows every key and policy it knew before.
"""

import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import ValidationError

from protocol.coupon_events import BusinessConfig, CampaignPolicy
from protocol.coupons import TrustedKey, keyring

log = logging.getLogger(__name__)

CONFIG_FILE = "business_config.json"


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
        active = derive(config, etag)  # ValueError for a key that does not decode
        self.save(config, etag)
        self.activate(active)

    def save(self, config: BusinessConfig, etag: str | None) -> None:
        """Write the file atomically: temp, fsync, rename, fsync the directory (blocking)."""
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write((etag or "") + "\n" + config.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        # The rename itself is durable only once the directory is (rename(2), POSIX fsync).
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def activate(self, active: ActiveConfig) -> None:
        """Switch to an already saved config (on the loop: readers see old or new, never both)."""
        self.active = active
        self.state = ConfigState.CURRENT


def derive(
    config: BusinessConfig, etag: str | None, previous: ActiveConfig | None = None
) -> ActiveConfig:
    """`config` with its keyring and campaign table; reused from `previous` if coupons match.

    ValueError for a public key that does not decode.
    """
    if previous is not None and previous.config.coupons == config.coupons:
        return ActiveConfig(config, etag, previous.keys, previous.campaigns)
    return _activate(config, etag)


def _activate(config: BusinessConfig, etag: str | None) -> ActiveConfig:
    campaigns = {c.campaign_id: c for c in config.coupons.campaigns}
    return ActiveConfig(config, etag, keyring(config.coupons), campaigns)
