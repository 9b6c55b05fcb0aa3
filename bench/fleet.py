"""bench/fleet: 10,000 simulated agents heartbeating every 30 s with event traffic (issue 5).

One `storeedge cloud serve` replica on a scratch PostgreSQL database; `storeedge sim fleet`
in another process drives the agents. Reported: heartbeat and batch latency as the agents
see them, the simulator's own loop lag (if it is high, the latencies include the
simulator's queueing), and the replica's RSS and CPU over the run.
"""

import argparse
import json
import os
import resource
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


def run_fleet(
    agents: int, events_per_min: float, duration: float, heartbeat: float
) -> dict[str, Any]:
    """One replica on a scratch database, one simulator run; its summary plus replica facts."""
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
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "agent.cli.main", "sim", "fleet", "--cloud", url,
                 "--agents", str(agents), "--events-per-min", str(events_per_min),
                 "--duration", str(duration), "--heartbeat", str(heartbeat),
                 "--quiet", "--json", str(summary_path)],
                env={**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN},
                capture_output=True, text=True,
            )  # fmt: skip
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            sim_cpu = (
                after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
            ) / wall
            cpu = (cpu_seconds(pid) - cpu_before) / wall
            stop.set()
            watcher.join()
            end_rss, peak_rss = rss_mb_of(pid), peak_rss_mb_of(pid)
        if done.returncode not in (0, 1) or not summary_path.exists():
            raise RuntimeError(f"sim fleet failed: {done.stderr[-2000:]}")
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary.update(
        idle_rss=idle_rss, end_rss=end_rss, peak_rss=peak_rss, cloud_cpu=cpu, sim_cpu=sim_cpu
    )
    return summary


def rows_for(
    summary: dict[str, Any], heartbeat: float, events_per_min: float
) -> list[dict[str, Any]]:
    """The table rows of one fleet run."""
    latency = summary["latency"]
    beats, batch, lag = latency["heartbeat"], latency["batch"], latency["sim_loop_lag"]
    requests = summary["requests"]
    run_s = summary["elapsed_s"]
    n = f"{summary['agents']:,} agents"
    return [
        {
            "what": f"{n}: heartbeat every {heartbeat:g} s",
            "per_s": round(requests.get("heartbeat 200", 0) / run_s, 1),
            "p50_ms": beats["p50_ms"],
            "p99_ms": beats["p99_ms"],
            "max_ms": beats["max_ms"],
        },
        {
            "what": f"{n}: event batches, {events_per_min:g} events/min each",
            "per_s": round(requests.get("events 200", 0) / run_s, 1),
            "p50_ms": batch["p50_ms"],
            "p99_ms": batch["p99_ms"],
            "max_ms": batch["max_ms"],
        },
        {
            "what": f"{n}: simulator loop lag (its own queueing)",
            "p50_ms": lag["p50_ms"],
            "p99_ms": lag["p99_ms"],
            "max_ms": lag["max_ms"],
        },
        {
            "what": f"{n}: replica RSS MB idle/end/peak · CPU replica/simulator",
            "per_s": f"{summary['idle_rss']:.0f}/{summary['end_rss']:.0f}/"
            f"{summary['peak_rss']:.0f} · {summary['cloud_cpu']:.0%}/{summary['sim_cpu']:.0%}",
        },
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the fleet benchmark (a small fleet, then the full one) and write the results."""
    parser = argparse.ArgumentParser(prog="bench.fleet")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=2_000, help="the reference run first")
    parser.add_argument("--events-per-min", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    args = parser.parse_args(argv)
    runs = [
        run_fleet(n, args.events_per_min, args.duration, args.heartbeat)
        for n in (args.small, args.agents)
        if n
    ]
    rows = [row for run in runs for row in rows_for(run, args.heartbeat, args.events_per_min)]
    full = runs[-1]
    beats = full["latency"]["heartbeat"]
    lag = full["latency"]["sim_loop_lag"]
    events = full["events"]
    shed = {k: v for k, v in full["requests"].items() if k.endswith((" 429", " 503"))}
    extra = {
        "agents": full["agents"],
        "heartbeat_p99_ms": beats["p99_ms"],
        "sim_loop_lag_p99_ms": lag["p99_ms"],
        "cloud_rss_mb": full["end_rss"],
        "cloud_peak_rss_mb": full["peak_rss"],
        "cloud_cpu": full["cloud_cpu"],
        "sim_cpu": full["sim_cpu"],
        "events": events,
        "shed": shed,
        "runs": [
            {k: run[k] for k in ("agents", "latency", "events", "requests", "cloud_cpu", "sim_cpu")}
            for run in runs
        ],
        "goal": {"heartbeat_p99_ms": 100},
        "verdict": (
            f"{full['agents']:,} agents: heartbeat p99 {beats['p99_ms']:,} ms with the "
            f"simulator's own loop lag p99 {lag['p99_ms']:,} ms; "
            f"{events.get('accepted', 0):,} events accepted, "
            f"{events.get('undelivered', 0):,} undelivered; 429/503: {shed or 'none'}; "
            f"replica peak RSS {full['peak_rss']:.0f} MB."
        ),
    }
    report("fleet", "bench/fleet — simulated agents against one replica on PostgreSQL", rows, extra)
    return extra


if __name__ == "__main__":
    main()
