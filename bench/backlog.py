"""bench/backlog: cost growth and memory at 10 k, 100 k and 1 M events of backlog (issue 9).

The agent runs alone in a child process (bench/backlog_child.py) against `storeedge cloud
serve` (SQLite, FULL) in another. At each backlog B it captures a window of events on top of
B, then drains back down to B, so both rates are measured at B; then it drains the whole
1 M backlog, and reports its resident memory throughout.
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from agent.credentials import enroll
from bench.common import ratio, report
from bench.processes import REPO, cli, cloud

BACKLOGS = [10_000, 100_000, 1_000_000]
WINDOW = 20_000
GOAL_VS_SMALL = 0.8
GOAL_RSS_MB = 64.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the backlog benchmark and write bench/results/backlog.json."""
    parser = argparse.ArgumentParser(prog="bench.backlog")
    parser.add_argument("--backlogs", type=int, nargs="+", default=BACKLOGS)
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        db = Path(tmp) / "cloud.db"
        with cloud(db) as url:
            code = cli("cloud", "enroll-code", "--store", "store-bench", "--db", f"sqlite:///{db}")
            credentials = asyncio.run(enroll(url, code))
            done = subprocess.run(
                [sys.executable, "-m", "bench.backlog_child", str(Path(tmp) / "outbox.db"),
                 url, credentials.agent_id, credentials.store_id, credentials.token,
                 str(args.window), *map(str, args.backlogs)],
                check=True, capture_output=True, text=True, cwd=REPO,
            )  # fmt: skip
    measured = orjson.loads(done.stdout)
    points = measured["points"]
    small, large = points[0], points[-1]
    rows = [
        {
            "what": f"backlog {p['backlog']:,}: capture {args.window:,} on top, drain back",
            "capture_per_s": round(p["capture_per_s"]),
            "capture_vs_smallest": ratio(p["capture_per_s"], small["capture_per_s"], "%"),
            "drain_per_s": round(p["drain_per_s"]),
            "drain_vs_smallest": ratio(p["drain_per_s"], small["drain_per_s"], "%"),
            "agent_rss_mb": round(p["rss_mb"], 1),
        }
        for p in points
    ]
    rows.append(
        {
            "what": f"drain the whole {measured['full_backlog']:,} backlog to the cloud",
            "drain_per_s": round(measured["full_drain_per_s"]),
            "agent_rss_mb": round(measured["rss_full_mb"], 1),
            "agent_peak_rss_mb": round(measured["peak_rss_mb"], 1),
        }
    )
    capture_kept = large["capture_per_s"] / small["capture_per_s"]
    drain_kept = large["drain_per_s"] / small["drain_per_s"]
    growth_met = capture_kept >= GOAL_VS_SMALL and drain_kept >= GOAL_VS_SMALL
    rss_met = measured["peak_rss_mb"] <= GOAL_RSS_MB
    top = f"{large['backlog']:,}"
    summary = [
        {"benchmark": f"cost growth: capture and drain at {top} events of backlog",
         "figure": f"capture {large['capture_per_s']:,.0f}/s, drain {large['drain_per_s']:,.0f}/s",
         "compared_with": f"the same at {small['backlog']:,}: {small['capture_per_s']:,.0f}/s, "
                          f"{small['drain_per_s']:,.0f}/s",
         "ratio": f"capture {capture_kept:.0%}, drain {drain_kept:.0%}",
         "goal": f"≥ {GOAL_VS_SMALL:.0%} of the small-backlog rate", "met": growth_met},
        {"benchmark": f"agent memory, {top}-event backlog captured then drained",
         "figure": f"peak RSS {measured['peak_rss_mb']:.1f} MB",
         "compared_with": "—", "ratio": "—", "goal": f"≤ {GOAL_RSS_MB:g} MB", "met": rss_met},
    ]  # fmt: skip
    extra = {
        "points": points,
        "full_drain_per_s": measured["full_drain_per_s"],
        "agent_peak_rss_mb": measured["peak_rss_mb"],
        "goal": {"vs_smallest_backlog": f"{GOAL_VS_SMALL:.0%}", "agent_rss_mb": GOAL_RSS_MB},
        "summary": summary,
        "verdict": f"at {top} events of backlog capture keeps {capture_kept:.0%} and drain "
        f"{drain_kept:.0%} of their rates at {small['backlog']:,} "
        + ("(meets" if growth_met else "(MISSES")
        + f" the {GOAL_VS_SMALL:.0%} goal); the agent's peak RSS over the whole run is "
        f"{measured['peak_rss_mb']:.1f} MB "
        + ("(meets" if rss_met else "(OVER")
        + f" the {GOAL_RSS_MB:g} MB goal): batches are paged, never the backlog held.",
    }
    report("backlog", "bench/backlog — cost growth and memory with a deep backlog", rows, extra)
    return extra


if __name__ == "__main__":
    main()
