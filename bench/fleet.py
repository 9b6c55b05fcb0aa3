"""bench/fleet: 10,000 simulated agents heartbeating every 30 s with event traffic (issue 5).

One `storeedge cloud serve` replica on a scratch PostgreSQL database; `storeedge sim fleet`
in another process drives the agents. Reported: heartbeat and batch latency as the agents
see them, the simulator's own loop lag (if it is high, the latencies include the
simulator's queueing), and the replica's RSS and CPU over the run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.cloud_ingest import cpu_seconds
from bench.common import report
from bench.pgbench_db import ADMIN, cloud_process, peak_rss_mb_of, rss_mb_of, scratch_database


def watch_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    """Sample a process's RSS every second until `stop`."""
    while not stop.wait(1.0):
        try:
            samples.append(rss_mb_of(pid))
        except OSError:
            return


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the fleet benchmark and write bench/results/fleet.json."""
    parser = argparse.ArgumentParser(prog="bench.fleet")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--events-per-min", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    args = parser.parse_args(argv)
    with scratch_database() as db, tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        # The agents' limits stay the defaults: this measures the service as deployed.
        with cloud_process(db, log=Path(tmp) / "cloud.log") as (url, pid):
            idle_rss = rss_mb_of(pid)
            stop = threading.Event()
            samples: list[float] = []
            watcher = threading.Thread(target=watch_rss, args=(pid, stop, samples), daemon=True)
            watcher.start()
            cpu_before = cpu_seconds(pid)
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "agent.cli.main", "sim", "fleet", "--cloud", url,
                 "--agents", str(args.agents), "--events-per-min", str(args.events_per_min),
                 "--duration", str(args.duration), "--heartbeat", str(args.heartbeat),
                 "--quiet", "--json", str(summary_path)],
                env={**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN},
                capture_output=True, text=True,
            )  # fmt: skip
            wall = time.monotonic() - started
            cpu = (cpu_seconds(pid) - cpu_before) / wall
            stop.set()
            watcher.join()
            end_rss, peak_rss = rss_mb_of(pid), peak_rss_mb_of(pid)
        if done.returncode not in (0, 1) or not summary_path.exists():
            raise RuntimeError(f"sim fleet failed: {done.stderr[-2000:]}")
        summary = json.loads(summary_path.read_text())
    latency = summary["latency"]
    heartbeat, batch, lag = latency["heartbeat"], latency["batch"], latency["sim_loop_lag"]
    requests = summary["requests"]
    run_s = summary["elapsed_s"]
    rows = [
        {
            "what": f"heartbeat, {summary['agents']:,} agents every {args.heartbeat:g} s",
            "per_s": round(requests.get("heartbeat 200", 0) / run_s, 1),
            "p50_ms": heartbeat["p50_ms"],
            "p99_ms": heartbeat["p99_ms"],
            "p99_9_ms": heartbeat["p99_9_ms"],
            "max_ms": heartbeat["max_ms"],
        },
        {
            "what": f"event batches, {args.events_per_min:g} events/min per agent",
            "per_s": round(requests.get("events 200", 0) / run_s, 1),
            "p50_ms": batch["p50_ms"],
            "p99_ms": batch["p99_ms"],
            "p99_9_ms": batch["p99_9_ms"],
            "max_ms": batch["max_ms"],
        },
        {
            "what": "simulator loop lag (its own queueing)",
            "p50_ms": lag["p50_ms"],
            "p99_ms": lag["p99_ms"],
            "max_ms": lag["max_ms"],
        },
        {
            "what": "cloud replica RSS MB: idle / end / peak",
            "per_s": f"{idle_rss:.0f} / {end_rss:.0f} / {peak_rss:.0f}",
        },
        {"what": "cloud replica CPU, enrollment included", "per_s": f"{cpu:.0%}"},
    ]
    events = summary["events"]
    shed = {k: v for k, v in requests.items() if k.endswith((" 429", " 503"))}
    extra = {
        "agents": summary["agents"],
        "heartbeat_p99_ms": heartbeat["p99_ms"],
        "cloud_rss_mb": end_rss,
        "cloud_peak_rss_mb": peak_rss,
        "cloud_cpu": cpu,
        "events": events,
        "shed": shed,
        "goal": {"heartbeat_p99_ms": 100},
        "verdict": (
            f"heartbeat p99 {heartbeat['p99_ms']} ms at {summary['agents']:,} agents; "
            f"{events.get('accepted', 0):,} events accepted, "
            f"{events.get('undelivered', 0)} undelivered; 429/503 answers: {shed or 'none'}; "
            f"replica peak RSS {peak_rss:.0f} MB."
        ),
    }
    report("fleet", "bench/fleet — simulated agents against one replica on PostgreSQL", rows, extra)
    return extra


if __name__ == "__main__":
    main()
