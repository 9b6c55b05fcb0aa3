"""Issue 4's story: the cloud goes down on the eve of a sale and the stores keep redeeming.

Real processes: `storeedge cloud serve` and three `storeedge agent run`, each with its POS
endpoint on loopback and a pty scanner. Online, a coupon is single-use across stores. Then the
cloud is killed; 500 coupons are redeemed across the three stores (a third by scanner, the rest
by the tills), plus coupons redeemed twice at two stores and coupons over the offline limit.
The cloud comes back: every redemption arrives exactly once, each double redemption is one
conflict naming both stores, and the campaign's stats add up.
"""

import json
import signal
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stack import AgentProcess, CloudProcess, free_port, outbox_state, run_cli, wait_until

from hardware.emulators.scanner import PtyScanner

STORES = ("store-north", "store-east", "store-south")
REDEMPTIONS = 500
DOUBLES = 5  # coupons redeemed at two stores during the outage
OVER_LIMIT = 4
POS_TOKEN = "e2e-pos-token-0123456789"
OFFLINE_LIMIT = 5000


def _agent_toml(state: Path, cloud_url: str, pos_port: int, link: Path) -> str:
    return f"""
[agent]
state_dir = "{state}"

[cloud]
url = "{cloud_url}"
heartbeat_interval_s = 1.0
backoff_base_s = 0.05
backoff_cap_s = 0.5
request_timeout_s = 3.0

[coupons]
config_poll_interval_s = 2

[pos]
host = "127.0.0.1"
port = {pos_port}
token = "{POS_TOKEN}"

[[devices]]
id = "scanner-till"
kind = "scanner"
transport = "serial"
port = "{link}"
idle_timeout_ms = 0
"""


class Store:
    """One store: its agent process, its till (POS endpoint) and its scanner."""

    def __init__(self, name: str, tmp: Path, cloud: CloudProcess) -> None:
        self.name = name
        self.state = tmp / name
        self.pos_port = free_port()
        self.scanner = PtyScanner(tmp / f"{name}.tty")
        code = run_cli("cloud", "enroll-code", "--store", name, "--db", cloud.db_url).strip()
        run_cli("agent", "enroll", "--cloud", cloud.url, "--code", code,
                "--state-dir", str(self.state))  # fmt: skip
        config = tmp / f"{name}.toml"
        config.write_text(_agent_toml(self.state, cloud.url, self.pos_port, self.scanner.link))
        self.agent = AgentProcess(config, tmp / f"{name}.log")

    def redeem(self, token: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.pos_port}/v1/coupons/redeem",
            data=json.dumps({"token": token, "pos_ref": "e2e"}).encode(),
            headers={"Authorization": f"Bearer {POS_TOKEN}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ready(self) -> bool:
        saved = self.state / "business_config.json"
        if not saved.exists() or '"campaigns":[]' in saved.read_text():
            return False
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.pos_port}/healthz",
                headers={"Authorization": f"Bearer {POS_TOKEN}"},
            )
            with urllib.request.urlopen(request, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def backlog(self) -> int:
        backlog: int = outbox_state(self.state / "outbox.db")["backlog"]
        return backlog


def test_stores_keep_redeeming_through_a_cloud_outage(tmp_path: Path) -> None:
    cloud = CloudProcess(tmp_path / "cloud.db", free_port(), tmp_path / "cloud.log")
    cloud.start()
    now = datetime.now(UTC)
    campaign = cloud.admin_post("/api/campaigns", {
        "name": "Double Eleven", "currency": "CNY", "max_offline_value": OFFLINE_LIMIT,
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_to": (now + timedelta(days=3)).isoformat(),
    })  # fmt: skip
    cid = campaign["campaign_id"]

    def issue(count: int, value: int) -> list[str]:
        body = {"count": count, "value": value}
        return [
            c["token"] for c in cloud.admin_post(f"/api/campaigns/{cid}/coupons", body)["coupons"]
        ]

    online_one = issue(1, 1000)[0]
    tokens = issue(REDEMPTIONS, 2000)
    doubles = issue(DOUBLES, 3000)
    big = issue(OVER_LIMIT, OFFLINE_LIMIT + 1)
    stores = [Store(name, tmp_path, cloud) for name in STORES]
    try:
        for store in stores:
            store.agent.start()
        wait_until(lambda: all(s.ready() for s in stores), 30, "agents never got their config")

        # Online: single use across the fleet.
        status, first = stores[0].redeem(online_one)
        assert (status, first["reservation"]) == (200, "reserved"), first
        status, second = stores[1].redeem(online_one)
        assert (status, second["reason"], second["other_store_id"]) == (
            409, "already_redeemed_elsewhere", "store-north"
        )  # fmt: skip

        cloud.stop(signal.SIGKILL)  # the outage
        expected: Counter[str] = Counter({"store-north": 1})
        by_scanner: Counter[str] = Counter()
        for i, token in enumerate(tokens):
            store = stores[i % len(stores)]
            expected[store.name] += 1
            if i % 3 == 0:
                store.scanner.scan(token)  # the till's scanner: no answer but the receipt
                by_scanner[store.name] += 1
                continue
            status, answer = store.redeem(token)
            assert (status, answer["status"], answer["reservation"]) == (
                200, "redeemed", "offline"
            ), answer  # fmt: skip
        for i, token in enumerate(doubles):
            for store in (stores[i % 3], stores[(i + 1) % 3]):
                status, answer = store.redeem(token)
                assert (status, answer["reservation"]) == (200, "offline"), answer
                expected[store.name] += 1
        for token in big:
            status, answer = stores[0].redeem(token)
            assert (status, answer["reason"]) == (409, "over_offline_limit"), answer
        for store in stores:
            assert store.scanner.drain(10), "an agent stopped reading its scanner"

        cloud.start()
        total = REDEMPTIONS + 2 * DOUBLES + 1
        wait_until(
            lambda: _redeemed_count(cloud, cid) >= total and not any(s.backlog() for s in stores),
            60,
            f"not everything arrived: cloud {_redeemed_count(cloud, cid)}/{total}",
        )
        for store in stores:
            assert store.agent.terminate() == 0, f"{store.name} did not stop cleanly"
    finally:
        for store in stores:
            if store.agent.proc is not None:
                store.agent.kill9()
            store.scanner.close()

    redeemed = [e for s in STORES for e in cloud.all_events(s, "coupon.redeemed")]
    ids = Counter(e["payload"]["redemption_id"] for e in redeemed)
    assert len(redeemed) == total
    assert max(ids.values()) == 1, "a redemption arrived twice"
    assert Counter(e["store_id"] for e in redeemed) == expected
    channels = Counter((e["store_id"], e["payload"]["channel"]) for e in redeemed)
    for name in STORES:
        assert channels[(name, "scanner")] == by_scanner[name]
    stats = cloud.admin(f"/api/campaigns/{cid}/stats")
    assert stats["redemptions"] == total
    assert stats["redeemed_coupons"] == 1 + REDEMPTIONS + DOUBLES
    assert stats["offline_redemptions"] == REDEMPTIONS + 2 * DOUBLES
    assert stats["reserved_online"] == 1
    assert stats["conflicts"] == DOUBLES
    assert stats["value_redeemed"] == 1000 + REDEMPTIONS * 2000 + 2 * DOUBLES * 3000
    assert {p["store_id"]: p["redemptions"] for p in stats["stores"]} == dict(expected)
    assert sum(p["redemptions"] for p in stats["stores"]) == stats["redemptions"]
    assert stats["rejected"] == {"already_redeemed_elsewhere": 1, "over_offline_limit": OVER_LIMIT}
    conflicts = cloud.admin(f"/api/coupons/conflicts?campaign_id={cid}")["conflicts"]
    assert len(conflicts) == DOUBLES
    assert all(len(c["stores"]) == 2 and len(c["redemptions"]) == 2 for c in conflicts)
    for store in stores:
        assert outbox_state(store.state / "outbox.db")["dead"] == 0
    cloud.stop()


def _redeemed_count(cloud: CloudProcess, campaign_id: int) -> int:
    if not cloud.healthy():
        return -1
    count: int = cloud.admin(f"/api/campaigns/{campaign_id}/stats")["redemptions"]
    return count
