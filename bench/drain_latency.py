"""bench/drain_latency: capture latency while draining, this tree beside git revision `--before`.

bench/drain's latency table is one run; on a shared machine one run says little. This runs
the same measurement (bench/drain_child `--latency`: an idle window, then the same open-loop
capture while the drain works) for the agent of this tree and of `--before` (driven by this
tree's bench/, so only the agent differs, not the load generator), alternated for
`--rounds` rounds against a fresh copy of the same cloud and backlog, and prints each round
and the medians. The cloud always runs from this tree, without the per-agent event limit, so
only the agent differs. `--pin` runs the cloud on CPU 1 and the agent on CPU 0 (taskset).
Not part of `make bench`: it writes no results file, only what it prints (and `--json`).
"""

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.credentials import enroll
from agent.outbox import Identity
from bench.common import load, percentiles
from bench.processes import (
    BATCH,
    REPO,
    _env,
    before_tree,
    cli,
    cloud,
    copy_db,
    fill,
)

# The last commit before the fixes of this round (GC-untracked drain records, sliced acks).
BEFORE_REV = "ca9d84a"


def latency_run(
    outbox: Path, url: str, token: str, identity: Identity, args: argparse.Namespace,
    src: Path | None, prefix: tuple[str, ...],
) -> dict[str, Any]:  # fmt: skip
    """One bench/drain_child `--latency` run of the agent in `src` (None: this tree)."""
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "bench.drain_child", str(outbox), url,
         identity.agent_id, identity.store_id, token, str(BATCH), "--latency",
         str(args.rate), str(args.seconds)],
        check=True, capture_output=True, text=True, env=_env(src), cwd=src or REPO,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Alternate this tree's agent with `--before`'s; print every round and the medians."""
    parser = argparse.ArgumentParser(prog="bench.drain_latency")
    parser.add_argument("--before", default=BEFORE_REV, help="git revision of the other agent")
    parser.add_argument("--events", type=int, default=150_000, help="backlog at the start")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", action="store_true", help="cloud on CPU 1, agent on CPU 0")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args(argv)
    cloud_cpu, agent_cpu = (
        (("taskset", "-c", "1"), ("taskset", "-c", "0")) if args.pin else ((), ())
    )
    with tempfile.TemporaryDirectory(prefix="bench-drain-latency-") as tmp:
        tmpdir = Path(tmp)
        before_src, before_rev = before_tree(args.before, tmpdir / "before")
        if before_src is None:
            raise SystemExit(f"bench/drain_latency: {before_rev}")
        shutil.copytree(REPO / "bench", before_src / "bench", dirs_exist_ok=True)
        variants = {f"before ({before_rev})": before_src, "this tree": None}
        cloud_db = tmpdir / "cloud.db"
        with cloud(cloud_db) as url:
            code = cli(
                "cloud", "enroll-code", "--store", "store-bench", "--db", f"sqlite:///{cloud_db}"
            )
            credentials = asyncio.run(enroll(url, code))
        identity = Identity(credentials.agent_id, credentials.store_id)
        copy_db(cloud_db, tmpdir / "cloud-enrolled.db")
        fill(tmpdir / "filled.db", identity, args.events)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for round_no in range(args.rounds):
            for name, src in variants.items():
                copy_db(tmpdir / "cloud-enrolled.db", cloud_db)
                copy_db(tmpdir / "filled.db", tmpdir / "outbox.db")
                with cloud(cloud_db, prefix=cloud_cpu) as url:
                    result = latency_run(
                        tmpdir / "outbox.db", url, credentials.token, identity, args, src,
                        agent_cpu,
                    )  # fmt: skip
                run = {
                    "idle": percentiles(result["idle_samples"]),
                    "draining": percentiles(result["samples"]),
                    "drained_per_s": round(result["drained_per_s"]),
                    "backlog_after": result["backlog_after"],
                    "load": load(),
                }
                runs[name].append(run)
                print(
                    f"round {round_no + 1} {name:>20}: idle p99 {run['idle']['p99_ms']:7.2f} ms"
                    f" | draining p50 {run['draining']['p50_ms']:6.2f} p99 "
                    f"{run['draining']['p99_ms']:7.2f} p99.9 {run['draining']['p99_9_ms']:7.2f}"
                    f" ms | drained {run['drained_per_s']:,}/s | load {run['load']}",
                    flush=True,
                )
    summary = {name: _medians(rs) for name, rs in runs.items()}
    print(f"medians over {args.rounds} rounds ({'pinned' if args.pin else 'not pinned'}):")
    for name, med in summary.items():
        print(f"  {name:>20}: " + ", ".join(f"{k} {v:,.2f}" for k, v in med.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": summary}, indent=2) + "\n")
    return summary


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(key: str, field: str) -> float:
        return float(statistics.median(run[key][field] for run in runs))

    return {
        "idle_p99_ms": med("idle", "p99_ms"),
        "p50_ms": med("draining", "p50_ms"),
        "p99_ms": med("draining", "p99_ms"),
        "p99_9_ms": med("draining", "p99_9_ms"),
        "drained_per_s": float(statistics.median(run["drained_per_s"] for run in runs)),
    }


if __name__ == "__main__":
    main()
