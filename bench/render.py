"""Render docs/BENCHMARKS.md from bench/results/*.json, so the doc never drifts from a run."""

import json
from pathlib import Path
from typing import Any

from bench.common import BENCHMARKS, RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
PREAMBLE = Path(__file__).with_name("PREAMBLE.md")


def render() -> Path:
    """Write docs/BENCHMARKS.md: the preamble, then one table per results file."""
    parts = [PREAMBLE.read_text() if PREAMBLE.exists() else "# Benchmarks\n"]
    results = [json.loads(path.read_text()) for path in RESULTS.glob("*.json")]
    results.sort(key=lambda data: _order(data["name"]))
    headline = summary(results)
    if headline:
        parts.append(headline)
    parts += [_section(data) for data in results]
    DOC.write_text("\n".join(parts))
    return DOC


def _section(data: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = data["rows"]
    machine = data["machine"]
    load = f", load average {data['load']}" if "load" in data else ""
    lines = [
        f"## bench/{data['name']}",
        "",
        f"Run {machine['date']} on {machine['cpus']} CPUs{load}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, {machine['platform']}. "
        f"Command: `python -m bench {data['name']}`.",
        "",
        *_markdown_table(rows),
    ]
    for title, table_rows in data.get("tables", {}).items():
        lines += ["", f"**{title}**", "", *_markdown_table(table_rows)]
    if "goal" in data:
        goals = ", ".join(f"{k} {v}" for k, v in data["goal"].items())
        lines += ["", f"Goals: {goals}."]
    if "verdict" in data:
        lines += ["", f"Verdict: {data['verdict']}"]
    return "\n".join(lines) + "\n"


def _order(name: str) -> tuple[int, str]:
    return (BENCHMARKS.index(name) if name in BENCHMARKS else len(BENCHMARKS), name)


def _markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return lines


def summary(results: list[dict[str, Any]]) -> str:
    """One headline table over every benchmark's `summary` entries: figure, ratio, goal."""
    entries = [entry for data in results for entry in data.get("summary", [])]
    if not entries:
        return ""
    lines = [
        "## Summary: every goal, its figure and the ratio it is quoted against",
        "",
        "| benchmark | figure | compared, in the same run, with | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for entry in entries:
        met = {True: "yes", False: "**no**", None: "—"}[entry.get("met")]
        cells = [entry["benchmark"], entry["figure"], entry.get("compared_with", "—"),
                 entry.get("ratio", "—"), entry.get("goal", "—"), met]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
