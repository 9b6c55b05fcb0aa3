"""Shared bench plumbing: machine facts, percentiles, a printed table and a JSON file."""

import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).with_name("results")
# Every benchmark, in the order they run and appear in docs/BENCHMARKS.md (issue 9's table).
BENCHMARKS = [
    "outbox",
    "drain",
    "backlog",
    "coupons",
    "peer",
    "console",
    "config",
    "cloud_ingest",
    "fleet",
]


def machine() -> dict[str, Any]:
    """Facts needed to compare runs: CPU count, Python, SQLite, kernel, date."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99/p99.9/max of latencies given in seconds, reported in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50_ms": round(at(0.50), 3),
        "p99_ms": round(at(0.99), 3),
        "p99_9_ms": round(at(0.999), 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def ratio(value: float, base: float, style: str) -> str:
    """`value` against `base` as "17%" (style "%") or "5.2×" (style "×")."""
    if base <= 0:
        return "n/a"
    return f"{value / base:.0%}" if style == "%" else f"{value / base:.1f}×"


def report(
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any],
    tables: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Print `rows` (and any further `tables`, by title) and write them with machine facts
    to results/<name>.json."""
    console = Console(width=200)
    for heading, table_rows in {title: rows, **(tables or {})}.items():
        console.print(_table(heading, table_rows))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"name": name, "machine": machine(), "load": load(), "rows": rows, **extra}
    if tables:
        data["tables"] = tables
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def load() -> str:
    """The 1/5/15-minute load averages when the run ended: a busy machine's figures are low."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column, justify="right" if column != "what" else "left")
    for row in rows:
        table.add_row(*(_fmt(row.get(column, "")) for column in columns))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
