"""Render docs/BENCHMARKS.md from bench/results/*.json, so the doc never drifts from a run."""

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
PREAMBLE = Path(__file__).with_name("PREAMBLE.md")


def render() -> Path:
    """Write docs/BENCHMARKS.md: the preamble, then one table per results file."""
    parts = [PREAMBLE.read_text() if PREAMBLE.exists() else "# Benchmarks\n"]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        parts.append(_section(data))
    DOC.write_text("\n".join(parts))
    return DOC


def _section(data: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = data["rows"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    machine = data["machine"]
    lines = [
        f"## bench/{data['name']}",
        "",
        f"Run {machine['date']} on {machine['cpus']} CPUs, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, {machine['platform']}. "
        f"Command: `python -m bench {data['name']}`.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    if "goal" in data:
        goals = ", ".join(f"{k} {v}" for k, v in data["goal"].items())
        lines += ["", f"Goals: {goals}."]
    if "verdict" in data:
        lines += ["", f"Verdict: {data['verdict']}"]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
