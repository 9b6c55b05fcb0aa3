"""The applier on its own: a config is checked against the box, saved, then switched to all at
once; refusals and failed saves change nothing; unchanged parts are handed to no one."""

import hashlib
from pathlib import Path
from typing import Any

import pytest

from agent.config import ScanSection
from agent.coupons.business import CONFIG_FILE, BusinessConfigStore, ConfigState
from agent.devices.scanner.routing import route
from agent.remote_config.applier import ConfigApplier
from agent.remote_config.scan_rules import effective_scan
from protocol.coupon_events import BusinessConfig, CouponConfig
from protocol.settings import DeviceSettings, ReceiptSettings, ScanRules

DEVICES = {"scan-till": "scanner", "scan-door": "scanner", "till": "printer"}


class Scanner:
    """A scanner driver as the applier sees it (the ScanConsumer boundary, which we own)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.rules: list[ScanSection] = []

    def apply_scan(self, scan: ScanSection) -> None:
        self.rules.append(scan)


def config(settings_version: int = 1, **sections: Any) -> BusinessConfig:
    body: dict[str, Any] = {
        "store_id": "store-1", "coupons": CouponConfig(), "settings_version": settings_version
    }  # fmt: skip
    body.update(sections)
    digest = hashlib.blake2b(repr(sorted(body.items())).encode(), digest_size=16).hexdigest()
    return BusinessConfig(version=digest, **body)


def door_rules(*patterns: str) -> dict[str, DeviceSettings]:
    return {"scan-door": DeviceSettings(scan=ScanRules(staff_badge_patterns=list(patterns)))}


@pytest.fixture
def store(tmp_path: Path) -> BusinessConfigStore:
    return BusinessConfigStore(tmp_path)


@pytest.fixture
def scanners() -> dict[str, Scanner]:
    return {name: Scanner(name) for name in ("scan-till", "scan-door")}


@pytest.fixture
def applier(store: BusinessConfigStore, scanners: dict[str, Scanner]) -> ConfigApplier:
    applier = ConfigApplier(store, DEVICES, ScanSection())
    for scanner in scanners.values():
        applier.add_scanner(scanner)
    return applier


def tag(c: BusinessConfig) -> str:
    return f'"{c.version}"'


def test_remote_rules_add_to_the_local_ones_and_never_replace_them() -> None:
    local = ScanSection(staff_badge_pattern=r"^STAFF-[0-9]{4}$", coupon_prefixes=["SE1."])
    fleet = ScanRules(coupon_prefixes=["SE2."], staff_badge_patterns=[r"EMP[0-9]+"])
    own = ScanRules(staff_badge_patterns=[r"^GUARD-[0-9]{3}$"], coupon_prefixes=["SE1."])
    scan = effective_scan(local, fleet, own)
    assert scan.coupon_prefixes == ["SE1.", "SE2."]
    verdicts = {text: route(text, None, scan).classification
                for text in ("STAFF-1234", "EMP77", "GUARD-123", "GUARD-1234", "SE2.abc",
                             "SE1.abc", "XEMP77")}  # fmt: skip
    assert verdicts == {
        "STAFF-1234": "staff_badge", "EMP77": "staff_badge", "GUARD-123": "staff_badge",
        "GUARD-1234": "unrecognised", "SE2.abc": "coupon", "SE1.abc": "coupon",
        "XEMP77": "unrecognised",  # a pattern matches the whole text, never a part
    }  # fmt: skip
    assert effective_scan(local) == local
    with pytest.raises(ValueError, match="redefinition of group name"):
        effective_scan(local, ScanRules(staff_badge_patterns=["(?P<n>a)", "(?P<n>b)"]))


async def test_a_new_config_is_saved_then_applied_and_only_changed_parts_are_handed(
    store: BusinessConfigStore, applier: ConfigApplier, scanners: dict[str, Scanner]
) -> None:
    first = config(1, devices=door_rules("^GUARD-[0-9]{3}$"))
    assert await applier.offer(first, tag(first))
    assert store.active is not None
    assert store.active.config == first
    assert store.state is ConfigState.CURRENT
    assert (store.path.read_text().partition("\n")[2]) == first.model_dump_json()
    assert scanners["scan-till"].rules == []  # its rules are still agent.toml's alone
    assert route("GUARD-123", None, scanners["scan-door"].rules[-1]).classification == (
        "staff_badge"
    )
    keys = store.active.keys
    # Only the receipt changes: no scanner is handed anything, the keyring is not rebuilt.
    second = config(2, devices=door_rules("^GUARD-[0-9]{3}$"),
                    receipt=ReceiptSettings(store_name="Flagship"))  # fmt: skip
    assert await applier.offer(second, tag(second))
    assert applier.last_changes == ["receipt"]
    assert dict(applier.handed) == {"scan-door": 1}
    assert store.active.keys is keys
    report = applier.report()
    assert (report.version, report.config_hash, report.error) == (2, second.version, None)
    # A fleet-wide rule reaches both scanners, once each.
    third = config(3, devices=door_rules("^GUARD-[0-9]{3}$"),
                   scan=ScanRules(coupon_prefixes=["SE2."]))  # fmt: skip
    assert await applier.offer(third, tag(third))
    assert dict(applier.handed) == {"scan-door": 2, "scan-till": 1}
    assert applier.last_changes == ["receipt", "scan"]


@pytest.mark.parametrize(
    ("devices", "reason"),
    [
        ({"scanner-9": DeviceSettings()},
         "devices.scanner-9: no such device on this box (agent.toml declares: "
         "scan-door, scan-till, till)"),
        ({"till": DeviceSettings(scan=ScanRules(coupon_prefixes=["X."]))},
         "devices.till: scan rules need a scanner, till is a printer"),
        (door_rules("(?P<id>a)", "(?P<id>b)"), "scan rules of scan-door: "),
    ],
)  # fmt: skip
async def test_a_config_that_does_not_fit_the_box_changes_nothing(
    store: BusinessConfigStore,
    applier: ConfigApplier,
    scanners: dict[str, Scanner],
    devices: dict[str, DeviceSettings],
    reason: str,
) -> None:
    good = config(1, devices=door_rules("^GUARD-[0-9]{3}$"))
    assert await applier.offer(good, tag(good))
    saved = store.path.read_bytes()
    told: list[str] = []
    applier.on_change = lambda: told.append("heartbeat")
    bad = config(2, devices=devices, receipt=ReceiptSettings(store_name="Never"))
    assert not await applier.offer(bad, tag(bad))
    assert store.path.read_bytes() == saved
    assert store.active is not None
    assert store.active.config == good
    assert [len(s.rules) for s in scanners.values()] == [0, 1]
    report = applier.report()
    assert (report.version, report.config_hash) == (1, good.version)
    assert report.error is not None
    assert reason in report.error.reason
    assert (report.error.settings_version, report.error.config_hash) == (2, bad.version)
    assert applier.refused_etag == tag(bad)
    assert told == ["heartbeat"]
    # The cloud answers 304 for the refused one: still refused. For the good one: healed.
    applier.confirmed(tag(bad))
    assert applier.report().error is not None
    applier.confirmed(tag(good))
    assert applier.report().error is None
    assert told == ["heartbeat", "heartbeat"]


async def test_a_failed_save_applies_nothing_and_is_retried(
    store: BusinessConfigStore, applier: ConfigApplier, scanners: dict[str, Scanner]
) -> None:
    good = config(1)
    assert await applier.offer(good, tag(good))
    store.path.with_suffix(".tmp").mkdir()  # the temp file cannot be created (EISDIR)
    new = config(2, devices=door_rules("^GUARD-[0-9]{3}$"))
    assert not await applier.offer(new, tag(new))
    assert store.active is not None
    assert store.active.config == good
    assert scanners["scan-door"].rules == []
    error = applier.report().error
    assert error is not None
    assert "not applied: cannot save" in error.reason
    assert applier.refused_etag is None  # not the config's fault: fetched again next poll
    store.path.with_suffix(".tmp").rmdir()
    assert await applier.offer(new, tag(new))
    assert applier.report().error is None
    assert len(scanners["scan-door"].rules) == 1


async def test_restart_restores_the_saved_config_to_the_consumers(tmp_path: Path) -> None:
    first = BusinessConfigStore(tmp_path)
    saved = config(4, devices=door_rules("^GUARD-[0-9]{3}$"))
    assert await ConfigApplier(first, DEVICES).offer(saved, tag(saved))

    store = BusinessConfigStore(tmp_path)
    store.load()
    applier = ConfigApplier(store, DEVICES)
    door = Scanner("scan-door")
    applier.add_scanner(door)
    applier.restore()
    assert store.state is ConfigState.STALE  # kept, until the cloud confirms it
    assert len(door.rules) == 1
    assert applier.report().version == 4


async def test_a_saved_config_that_no_longer_fits_is_dropped_at_start(tmp_path: Path) -> None:
    saved = config(4, devices=door_rules("^GUARD-[0-9]{3}$"))
    assert await ConfigApplier(BusinessConfigStore(tmp_path), DEVICES).offer(saved, tag(saved))
    # The field engineer took the door scanner out of agent.toml.
    store = BusinessConfigStore(tmp_path)
    store.load()
    applier = ConfigApplier(store, {"scan-till": "scanner"})
    applier.restore()
    assert store.active is None
    assert store.state is ConfigState.NONE
    error = applier.report().error
    assert error is not None
    assert error.reason.startswith("saved config no longer fits: devices.scan-door")
    assert (tmp_path / CONFIG_FILE).exists()  # kept on disk, only not used


def test_an_unreadable_config_is_refused_by_its_etag(applier: ConfigApplier) -> None:
    applier.refuse_unreadable('"' + "ab" * 16 + '"', "unreadable config: receipt.colour: …")
    error = applier.report().error
    assert error is not None
    assert (error.config_hash, error.settings_version) == ("ab" * 16, None)
    assert applier.refused_etag == '"' + "ab" * 16 + '"'
