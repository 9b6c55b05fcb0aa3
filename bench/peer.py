"""bench/peer: ThingsBoard IoT Gateway's SQLite event storage beside our outbox (issue 9).

The gateway's storage (`thingsboard_gateway.storage.sqlite`, as shipped on PyPI) is driven
directly with the same events our outbox stores: first for rate, then in kill -9 rounds
where each process captures at a steady rate and is killed at a random moment; every event
the caller was told is stored (`put` returned True; `append` returned) and is not on disk
afterwards is lost. research/gateways.md §1.3 explains where the gateway's loss comes from:
`put` only queues in RAM, a thread writes every ≤ 100 ms, with `synchronous=NORMAL`.
"""

import argparse
import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import ratio, report
from bench.outbox import outbox_rate
from bench.peer_child import body, open_tb
from bench.processes import REPO

ROUNDS = 5
KILL_AFTER_S = (1.0, 2.5)  # each round's kill lands somewhere in this window
SEED = 9  # the same kill moments in every run
POLL_S = 0.01


def tb_rate(directory: Path, events: int) -> tuple[float, float]:
    """(put returned, stored in data.db) events/s for one thread putting `events`."""
    storage = open_tb(directory)
    try:
        started = time.perf_counter()
        for index in range(events):
            if not storage.put(body(index).decode()):
                raise RuntimeError(f"ThingsBoard storage refused event {index}")
        put_done = time.perf_counter()
        conn = sqlite3.connect(directory / "data.db")
        while conn.execute("SELECT count(*) FROM messages").fetchone()[0] < events:
            time.sleep(POLL_S)
        stored = time.perf_counter()
        conn.close()
    finally:
        storage.stop()
    return events / (put_done - started), events / (stored - started)


def stored_indices(which: str, directory: Path) -> set[int]:
    """Indices of the events on disk after the kill (opening the file recovers its WAL)."""
    if which == "tb":
        path, sql = directory / "data.db", "SELECT message FROM messages"
    else:
        path, sql = directory / "outbox.db", "SELECT body FROM outbox"
    if not path.exists():
        return set()
    conn = sqlite3.connect(path)
    try:
        return {int(orjson.loads(row[0])["payload"]["text"]) for row in conn.execute(sql)}
    finally:
        conn.close()


def kill_round(which: str, directory: Path, rate: float, after_s: float) -> dict[str, Any]:
    """Capture at `rate` in a child, SIGKILL it after `after_s`; count acked and lost."""
    flags_path = directory / "acked.bin"
    capacity = int(rate * (KILL_AFTER_S[1] + 5))
    flags_path.write_bytes(b"\0" * capacity)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.peer_child", which, str(directory), str(flags_path),
         str(rate)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{which} capture child did not start")
    time.sleep(after_s)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # The child's writes to its shared mapping are in the page cache: they outlive the kill.
    acked = {i for i, flag in enumerate(flags_path.read_bytes()) if flag}
    lost = acked - stored_indices(which, directory)
    return {"acked": len(acked), "lost": len(lost)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the peer benchmark and write bench/results/peer.json."""
    parser = argparse.ArgumentParser(prog="bench.peer")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--rate", type=float, default=1000.0, help="capture rate when killed")
    args = parser.parse_args(argv)
    try:
        import thingsboard_gateway.version as tb_version
    except ImportError as exc:
        raise SystemExit(
            f"bench/peer needs the bench extra (pip install -e '.[bench]'): {exc}"
        ) from exc
    moments = random.Random(SEED)
    kills: dict[str, list[dict[str, Any]]] = {"tb": [], "outbox": []}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "tb-rate").mkdir()
        tb_put, tb_stored = tb_rate(tmpdir / "tb-rate", args.events)
        ours = asyncio.run(outbox_rate(tmpdir / "rate.db", args.events, args.producers))
        ours_normal = asyncio.run(
            outbox_rate(tmpdir / "normal.db", args.events, args.producers, "NORMAL")
        )
        for number in range(args.rounds):
            after_s = moments.uniform(*KILL_AFTER_S)
            for which in kills:
                directory = tmpdir / f"{which}-kill-{number}"
                directory.mkdir()
                kills[which].append(kill_round(which, directory, args.rate, after_s))
    version = tb_version.VERSION
    lost = {which: sum(r["lost"] for r in rounds) for which, rounds in kills.items()}
    acked = {which: sum(r["acked"] for r in rounds) for which, rounds in kills.items()}
    rows = [
        {"what": f"ThingsBoard {version} SQLiteEventStorage.put, 1 thread: put returned",
         "events_per_s": round(tb_put), "durable": "no: queued in RAM"},
        {"what": "… the same events committed to its data.db (synchronous=NORMAL)",
         "events_per_s": round(tb_stored), "durable": "process crash only"},
        {"what": f"our outbox.append, {args.producers} producers: returned = committed (FULL)",
         "events_per_s": round(ours), "durable": "crash and power loss",
         "vs_thingsboard_stored": ratio(ours, tb_stored, "×")},
        {"what": "our outbox.append, the same at synchronous=NORMAL, ThingsBoard's setting",
         "events_per_s": round(ours_normal), "durable": "process crash only",
         "vs_thingsboard_stored": ratio(ours_normal, tb_stored, "×")},
    ]  # fmt: skip
    names = {"tb": f"ThingsBoard {version} storage", "outbox": "our outbox"}
    kill_rows = [
        {
            "what": f"{names[which]}: kill -9 while capturing at {args.rate:.0f}/s",
            "rounds": len(rounds),
            "acknowledged": acked[which],
            "lost": lost[which],
            "lost_per_kill": [r["lost"] for r in rounds],
            "lost_share": f"{lost[which] / max(1, acked[which]):.2%}",
        }
        for which, rounds in kills.items()
    ]
    faster = ours_normal > tb_stored
    met = faster and lost["outbox"] == 0
    summary = [
        {"benchmark": "the peer gateway: ThingsBoard IoT Gateway's SQLite storage",
         "figure": f"outbox {ours:,.0f} events/s; lost {lost['outbox']} of {acked['outbox']:,} "
                   f"over {args.rounds} kill -9",
         "compared_with": f"ThingsBoard {version}: {tb_stored:,.0f}/s to disk; lost "
                          f"{lost['tb']:,} of {acked['tb']:,}",
         "ratio": f"{ours_normal / tb_stored:.2f}× its rate to disk at its durability "
                  f"(NORMAL); {ours / tb_stored:.2f}× at ours (FULL)",
         "goal": "faster, and 0 lost where it loses", "met": met},
    ]  # fmt: skip
    extra = {
        "thingsboard_gateway": version,
        "kills": kills,
        "summary": summary,
        "verdict": f"our outbox commits {ours:,.0f} events/s durably (FULL) against "
        f"ThingsBoard's {tb_stored:,.0f}/s reaching its data.db "
        f"({ratio(ours, tb_stored, '×')}); its `put` returns at {tb_put:,.0f}/s because it only "
        "queues in RAM. Over the same kill -9 moments ThingsBoard lost "
        f"{lost['tb']:,} of {acked['tb']:,} acknowledged events, our outbox {lost['outbox']}.",
    }
    tables = {"kill -9 at the same random moments, same capture rate": kill_rows}
    report("peer", "bench/peer — ThingsBoard IoT Gateway's storage vs our outbox", rows, extra,
           tables)  # fmt: skip
    return extra


if __name__ == "__main__":
    main()
