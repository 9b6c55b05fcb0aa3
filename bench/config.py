"""Remote config cost: GET /v1/config (304 and 200) with and without settings documents, and
the agent's apply of a new version (check + fsynced save + swap), side by side."""

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import ScanSection
from agent.coupons.business import BusinessConfigStore
from agent.remote_config.applier import ConfigApplier
from bench.common import percentiles, report
from cloud.config import CloudConfig
from cloud.keys import SETTINGS_STORAGE
from cloud.service import start_cloud
from cloud.settings import set_fleet_config, set_store_config
from protocol.coupon_events import BusinessConfig, CouponConfig
from protocol.settings import DeviceSettings, ReceiptSettings, ScanRules

STORE = "bench-store"
SCANNERS = [f"scanner-{i}" for i in range(4)]


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def cloud_rows(tmp: Path, count: int) -> list[dict[str, Any]]:
    """GET /v1/config as one agent polls it, over loopback, before and after documents."""
    config = CloudConfig(db_url=f"sqlite:///{tmp / 'cloud.db'}", admin_token="bench", port=0)
    rows = []
    async with await start_cloud(config) as cloud, aiohttp.ClientSession() as http:
        code = (await cloud.create_enroll_code(STORE)).code
        async with http.post(cloud.url + "/v1/enroll", json={"code": code}) as response:
            token = (await response.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def get(etag: str | None, status: int) -> str:
            headers = {**auth, **({"If-None-Match": etag} if etag else {})}
            async with http.get(cloud.url + "/v1/config", headers=headers) as response:
                await response.read()
                assert response.status == status, response.status
                return response.headers["ETag"]

        etag = await get(None, 200)
        for label, status in (("304, no settings written", 304), ("200, no settings", 200)):
            tag = etag if status == 304 else None
            samples = await _timed([lambda t=tag, s=status: get(t, s) for _ in range(count)])  # type: ignore[misc]
            rows.append({"what": f"GET /v1/config {label}", **percentiles(samples)})
        storage = cloud.app[SETTINGS_STORAGE]
        fleet = {"receipt": {"store_name": "Chain"}, "scan": {"coupon_prefixes": ["SE2."]}}
        await set_fleet_config(storage, fleet, "bench")
        devices = {d: {"scan": {"staff_badge_patterns": [f"^{d.upper()}-[0-9]+$"]}}
                   for d in SCANNERS}  # fmt: skip
        await set_store_config(storage, STORE, {"devices": devices}, "bench")
        etag = await get(None, 200)
        for label, status in (("304, fleet + override", 304), ("200, fleet + override", 200)):
            tag = etag if status == 304 else None
            samples = await _timed([lambda t=tag, s=status: get(t, s) for _ in range(count)])  # type: ignore[misc]
            rows.append({"what": f"GET /v1/config {label}", **percentiles(samples)})
    return rows


def _config(version: int, **sections: Any) -> BusinessConfig:
    digest = f"{version:032x}"
    return BusinessConfig(version=digest, store_id=STORE, coupons=CouponConfig(),
                          settings_version=version, **sections)  # fmt: skip


class _Scanner:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id

    def apply_scan(self, scan: ScanSection) -> None:
        del scan


async def agent_rows(tmp: Path, count: int) -> list[dict[str, Any]]:
    """ConfigApplier.offer: a receipt-only change vs one scanner's rules vs a refusal."""
    store = BusinessConfigStore(tmp)
    applier = ConfigApplier(store, dict.fromkeys(SCANNERS, "scanner"))
    for device_id in SCANNERS:
        applier.add_scanner(_Scanner(device_id))
    rows = []
    version = iter(range(1, 10 * count))

    def receipt() -> BusinessConfig:
        n = next(version)
        return _config(n, receipt=ReceiptSettings(store_name=f"Store {n}"))

    def one_scanner() -> BusinessConfig:
        n = next(version)
        rules = ScanRules(staff_badge_patterns=[f"^B{n}-[0-9]+$"])
        return _config(n, devices={"scanner-0": DeviceSettings(scan=rules)})

    def refused() -> BusinessConfig:
        return _config(next(version), devices={"scanner-9": DeviceSettings()})

    for label, make in (("receipt only changes (no consumer handed)", receipt),
                        ("one scanner's rules change (1 of 4 handed)", one_scanner),
                        ("refused: names a missing device (no save)", refused)):  # fmt: skip
        configs = [make() for _ in range(count)]
        samples = await _timed([lambda c=c: applier.offer(c, f'"{c.version}"') for c in configs])  # type: ignore[misc]
        rows.append({"what": f"agent apply: {label}", **percentiles(samples)})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the remote-config benchmark and write bench/results/config.json."""
    parser = argparse.ArgumentParser(prog="bench.config")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--applies", type=int, default=300)
    args = parser.parse_args(argv)
    logging.getLogger("agent.remote_config").setLevel(logging.CRITICAL)  # 300 refusals logged
    with tempfile.TemporaryDirectory(prefix="bench-config-") as tmp:
        rows = asyncio.run(cloud_rows(Path(tmp), args.requests))
        base = rows[0]["p50_ms"]
        for row in rows:
            row["n"] = args.requests
            row["vs_first_p50"] = f"{row['p50_ms'] / base:.2f}×"
        agent = asyncio.run(agent_rows(Path(tmp), args.applies))
        for row in agent:
            row["n"] = args.applies
            row["vs_first_p50"] = f"{row['p50_ms'] / agent[0]['p50_ms']:.2f}×"
        rows += agent
    extra = {
        "verdict": f"a 304 poll of a store with a fleet document and an override costs"
        f" {rows[2]['p50_ms'] / base:.2f}× (p50) one without: the cloud merges and validates the"
        " documents and hashes the extra sections on every poll; an agent refusing a config"
        " costs microseconds, applying one costs its fsynced save plus any new regex"
    }
    report("config", "bench/config — GET /v1/config on loopback; agent apply", rows, extra)
    return extra


if __name__ == "__main__":
    main()
