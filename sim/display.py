"""The live progress view and the final summary table (rich)."""

import time
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sim.fleet import Fleet, Phase


def live_view(fleet: Fleet) -> Group:
    """What the terminal shows while a run goes: a progress bar and the running counts."""
    options = fleet.options
    stats = fleet.stats
    if fleet.phase == Phase.ENROLLING:
        done = stats.enrolled + stats.enroll_failed
        title = Text(f"enrolling {done:,}/{options.agents:,} agents", style="bold")
        return Group(title, ProgressBar(total=options.agents, completed=done, width=60))
    elapsed = time.monotonic() - fleet.run_started if fleet.run_started else 0.0
    shown = min(elapsed, options.duration_s)
    title = Text(
        f"{fleet.phase.value}: {shown:,.0f}/{options.duration_s:,.0f} s · "
        f"{stats.enrolled:,} agents · {len(options.clouds)} cloud URL(s)",
        style="bold",
    )
    bar = ProgressBar(total=options.duration_s, completed=shown, width=60)
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("", "total", "per s"):
        table.add_column(column, justify="right" if column else "left")

    def rate(n: int) -> str:
        return f"{n / elapsed:,.0f}" if elapsed else "-"

    events = stats.events
    for label in ("captured", "accepted", "duplicate", "rejected"):
        table.add_row(f"events {label}", f"{events[label]:,}", rate(events[label]))
    table.add_row("events pending", f"{fleet.pending:,}", "")
    shed = sum(n for key, n in stats.requests.items() if key.endswith((" 429", " 503")))
    errors = sum(n for key, n in stats.requests.items() if key.endswith(" network_error"))
    table.add_row(
        "heartbeats", f"{stats.requests['heartbeat 200']:,}", rate(stats.requests["heartbeat 200"])
    )
    table.add_row("429/503 answers", f"{shed:,}", rate(shed))
    table.add_row("network errors", f"{errors:,}", rate(errors))
    heartbeat = stats.heartbeat.percentiles()
    if heartbeat:
        table.add_row(
            "heartbeat p50 / p99", f"{heartbeat['p50_ms']} / {heartbeat['p99_ms']} ms", ""
        )
    return Group(title, bar, table)


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run summary: outcomes, request answers, latency percentiles."""
    table = Table(title=f"fleet run: {summary['agents']:,} agents, {summary['elapsed_s']} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in sorted(summary["events"].items()):
        table.add_row(f"events {key}", f"{value:,}")
    table.add_row("events delivered per s", f"{summary['events_delivered_per_s']:,}")
    for key, value in sorted(summary["requests"].items()):
        table.add_row(f"requests {key}", f"{value:,}")
    for key, value in sorted(summary["retries"].items()):
        table.add_row(f"retries {key}", f"{value:,}")
    if summary["enroll_failed"]:
        table.add_row("enrollments failed", f"{summary['enroll_failed']:,}")
    for kind, figures in summary["latency"].items():
        if figures:
            text = " / ".join(f"{figures[k]}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
            table.add_row(f"{kind} p50/p90/p99/max ms", text)
    return table
