"""The fleet simulator against a real cloud on loopback: counts add up, 429s are waited out."""

import subprocess
import sys
from pathlib import Path

from cloud.config import CloudConfig
from cloud.service import start_cloud
from sim.fleet import Fleet, FleetOptions

ADMIN = "sim-admin"


async def test_every_captured_event_is_answered_once(tmp_path: Path) -> None:
    config = CloudConfig(db_url=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN, port=0)
    async with await start_cloud(config) as cloud:
        options = FleetOptions(
            clouds=(cloud.url,),
            admin_token=ADMIN,
            agents=20,
            events_per_min=300,
            duration_s=2.0,
            heartbeat_s=0.5,
            duplicate_rate=0.3,
            bad_rate=0.1,
        )
        summary = await Fleet(options).run()
        stored = await cloud.storage.count_events(None, None)
    events = summary["events"]
    assert summary["agents"] == 20
    assert events["captured"] > 50
    assert events["undelivered"] == 0
    assert (
        events["accepted"] + events.get("duplicate", 0) + events["rejected"] == events["captured"]
    )
    assert events["rejected"] > 0
    # Every resent batch is a duplicate of what the cloud already holds, never stored twice.
    assert events["resent_duplicate"] > 0
    assert events.get("resent_accepted", 0) == 0
    assert stored == events["accepted"]
    assert summary["requests"]["heartbeat 200"] > 20
    assert summary["latency"]["heartbeat"]["p99_ms"] > 0


async def test_agents_over_their_rate_wait_and_still_deliver(tmp_path: Path) -> None:
    config = CloudConfig(
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        admin_token=ADMIN,
        port=0,
        agent_events_per_s=300.0,
        agent_events_burst=1000.0,
    )
    async with await start_cloud(config) as cloud:
        options = FleetOptions(
            clouds=(cloud.url,),
            admin_token=ADMIN,
            agents=2,
            events_per_min=60 * 1000,  # 1000/s each: past the burst within the run
            duration_s=2.5,
            heartbeat_s=30.0,
            linger_s=0.05,
            grace_s=30.0,
        )
        summary = await Fleet(options).run()
        stored = await cloud.storage.count_events(None, None)
    assert summary["requests"].get("events 429", 0) > 0, summary
    assert summary["retries"]["events 429"] == summary["requests"]["events 429"]
    assert summary["events"]["undelivered"] == 0
    assert stored == summary["events"]["captured"]


def test_the_command_runs_a_local_cloud_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "sim", "fleet", "--agents", "5",
         "--events-per-min", "120", "--duration", "2", "--heartbeat", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "events accepted" in done.stdout
    assert "heartbeat p50/p90/p99/max ms" in done.stdout
    assert '"agents": 5' in out.read_text()


def test_the_command_refuses_bad_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "sim", "fleet", "--agents", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--agents must be positive" in done.stderr
