"""Apply a fetched business config all or nothing, and say what was applied or refused.

A config is first checked against this box (agent.toml's devices) and everything derived
from it is built (keyring, each scanner's rules); then the file is saved (temp, fsync,
rename); then, with no await in between, the store switches to it and each consumer whose
part changed is handed its new value. A refusal or a failed save changes nothing at all.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from agent.config import ScanSection
from agent.coupons.business import ActiveConfig, BusinessConfigStore, ConfigState, derive
from agent.errors import AgentError
from agent.remote_config.scan_rules import effective_scan
from protocol.coupon_events import BusinessConfig
from protocol.settings import MAX_REASON_LEN, ConfigRefusal, ScanRules

log = logging.getLogger(__name__)

NO_RULES = ScanRules()
_HASH_LEN = 32  # BusinessConfig.version: 16-byte BLAKE2b, hex


class ConfigRefused(AgentError):
    """The config does not fit this box; the message names the section and why."""


@runtime_checkable
class ScanConsumer(Protocol):
    """A scanner driver: takes new routing rules in place, without reconnecting."""

    device_id: str

    def apply_scan(self, scan: ScanSection) -> None:
        """Route every later scan with `scan`."""


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """What heartbeats say about the business config in force."""

    version: int | None
    config_hash: str | None
    error: ConfigRefusal | None


@dataclass(frozen=True, slots=True)
class _Plan:
    active: ActiveConfig
    scans: dict[str, ScanSection]  # only the scanners whose rules change
    changed: list[str]  # sections that differ from the config in force


class ConfigApplier:
    """Checks, saves and applies the business configs of one agent; never half of one."""

    def __init__(
        self,
        store: BusinessConfigStore,
        devices: Mapping[str, str] | None = None,
        local_scan: ScanSection | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._devices = dict(devices or {})  # device id → kind, as agent.toml declares them
        self._local_scan = local_scan or ScanSection()
        self._scanners: dict[str, ScanConsumer] = {}
        self._in_force: dict[str, ScanSection] = {}
        self.on_change = on_change  # told after every apply or refusal (heartbeat now)
        self.refusal: ConfigRefusal | None = None
        self.refused_etag: str | None = None  # not fetched again until the cloud moves on
        self.handed: Counter[str] = Counter()  # consumer → new values handed to it
        self.last_changes: list[str] = []
        self.applied = 0
        self.refused = 0

    def add_scanner(self, consumer: ScanConsumer) -> None:
        """Register a scanner driver built with agent.toml's `[scan]` rules."""
        self._scanners[consumer.device_id] = consumer
        self._in_force[consumer.device_id] = self._local_scan

    def restore(self) -> None:
        """Hand the saved config's parts to the consumers (at start, before they run)."""
        active = self._store.active
        if active is None:
            return
        try:
            plan = self._plan(active.config, active.etag, active)
        except ConfigRefused as exc:
            # agent.toml changed since it was saved: it is no last good config any more.
            self._store.active, self._store.state = None, ConfigState.NONE
            self._refuse(active.config, active.etag, f"saved config no longer fits: {exc}")
            return
        self._hand(plan.scans)

    async def offer(self, config: BusinessConfig, etag: str | None) -> bool:
        """Apply `config` if it fits this box: saved, then switched to at once; else False."""
        previous = self._store.active
        try:
            plan = self._plan(config, etag, previous)
        except ConfigRefused as exc:
            self._refuse(config, etag, str(exc))
            return False
        try:
            await asyncio.to_thread(self._store.save, config, etag)
        except OSError as exc:
            # Not the config's fault: nothing changed, and the next poll offers it again.
            self._refuse(config, None, f"not applied: cannot save {self._store.path}: {exc}")
            return False
        # No await from here on: a reader sees all of the old config or all of the new.
        self._store.activate(plan.active)
        self._hand(plan.scans)
        self.refusal, self.refused_etag = None, None
        self.applied += 1
        self.last_changes = plan.changed
        log.info("business config %s (settings v%d) applied; changed: %s", config.version,
                 config.settings_version, ", ".join(plan.changed) or "nothing")  # fmt: skip
        self._tell()
        return True

    def refuse_unreadable(self, etag: str | None, reason: str) -> None:
        """The cloud sent a config this agent cannot parse: refuse it like any other."""
        self._refuse(None, etag, reason)

    def confirmed(self, etag: str | None) -> None:
        """The cloud answered 304 for `etag`: if it is the config in force, nothing is refused."""
        active = self._store.active
        if active is not None and etag == active.etag and self.refusal is not None:
            log.info("the cloud wants business config %s again, the one in force", etag)
            self.refusal, self.refused_etag = None, None
            self._tell()

    def report(self) -> ConfigReport:
        """Settings version and hash in force, and why the latest one was refused."""
        active = self._store.active
        if active is None:
            return ConfigReport(None, None, self.refusal)
        return ConfigReport(active.config.settings_version, active.config.version, self.refusal)

    def _plan(
        self, config: BusinessConfig, etag: str | None, previous: ActiveConfig | None
    ) -> _Plan:
        """Everything `config` means for this box, built before anything changes."""
        for device_id, section in sorted(config.devices.items()):
            kind = self._devices.get(device_id)
            if kind is None:
                known = ", ".join(sorted(self._devices)) or "none"
                raise ConfigRefused(f"devices.{device_id}: no such device on this box "
                                    f"(agent.toml declares: {known})")  # fmt: skip
            if section.scan != NO_RULES and kind != "scanner":
                raise ConfigRefused(f"devices.{device_id}: scan rules need a scanner, "
                                    f"{device_id} is a {kind}")  # fmt: skip
        try:
            active = derive(config, etag, previous)
        except ValueError as exc:
            raise ConfigRefused(f"coupons: {exc}") from exc
        scans: dict[str, ScanSection] = {}
        for device_id in sorted(d for d, kind in self._devices.items() if kind == "scanner"):
            own = config.devices.get(device_id)
            try:
                scan = effective_scan(self._local_scan, config.scan, *([own.scan] if own else []))
            except ValueError as exc:
                raise ConfigRefused(f"scan rules of {device_id}: {exc}") from exc
            if device_id in self._scanners and scan != self._in_force[device_id]:
                scans[device_id] = scan
        old = previous.config if previous is not None else None
        return _Plan(active, scans, _changed_sections(old, config))

    def _hand(self, scans: dict[str, ScanSection]) -> None:
        for device_id, scan in scans.items():
            self._scanners[device_id].apply_scan(scan)
            self._in_force[device_id] = scan
            self.handed[device_id] += 1

    def _refuse(self, config: BusinessConfig | None, etag: str | None, reason: str) -> None:
        self.refused += 1
        self.refused_etag = etag
        config_hash = config.version if config is not None else _hash_of(etag)
        self.refusal = ConfigRefusal(
            settings_version=config.settings_version if config is not None else None,
            config_hash=config_hash,
            reason=reason[:MAX_REASON_LEN],
            at=datetime.now(UTC),
        )
        active = self._store.active
        kept = active.config.version if active is not None else "none"
        log.error("business config %s refused (keeping %s): %s", config_hash, kept, reason)
        self._tell()

    def _tell(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _changed_sections(old: BusinessConfig | None, new: BusinessConfig) -> list[str]:
    """Names of the sections that differ, `devices.ID` per device."""
    if old is None:
        return ["coupons", "receipt", "scan", *(f"devices.{d}" for d in sorted(new.devices))]
    changed = [name for name in ("coupons", "receipt", "scan")
               if getattr(old, name) != getattr(new, name)]  # fmt: skip
    for device_id in sorted(set(old.devices) | set(new.devices)):
        if old.devices.get(device_id) != new.devices.get(device_id):
            changed.append(f"devices.{device_id}")
    return changed


def _hash_of(etag: str | None) -> str | None:
    """The config hash inside a strong ETag, if it is one."""
    tag = (etag or "").strip('"')
    return tag if len(tag) == _HASH_LEN and all(c in "0123456789abcdef" for c in tag) else None
