"""The shape of a doctor check and its report: pass/fail/skip, what was seen, how to fix it."""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """A check's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row of the doctor's table; every FAIL carries a `fix`."""

    name: str
    outcome: Outcome
    detail: str
    fix: str = ""

    @classmethod
    def ok(cls, name: str, detail: str) -> "CheckResult":
        """A pass."""
        return cls(name, Outcome.PASS, detail)

    @classmethod
    def fail(cls, name: str, detail: str, fix: str) -> "CheckResult":
        """A failure and what to do about it."""
        return cls(name, Outcome.FAIL, detail, fix)

    @classmethod
    def skip(cls, name: str, detail: str) -> "CheckResult":
        """Not applicable, or blocked by an earlier failure."""
        return cls(name, Outcome.SKIP, detail)


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(r.outcome is Outcome.FAIL for r in results) else 0


def render_table(results: Sequence[CheckResult]) -> str:
    """A plain-text table (readable over ssh, on a phone, in a ticket), fixes under failures."""
    width = max((len(r.name) for r in results), default=10)
    lines = []
    for r in results:
        lines.append(f"{r.outcome.value:4}  {r.name:<{width}}  {r.detail}")
        if r.fix:
            lines.append(f"{'':4}  {'':<{width}}  fix: {r.fix}")
    failed = sum(1 for r in results if r.outcome is Outcome.FAIL)
    lines.append("")
    lines.append(
        f"{len(results)} checks, {failed} failed"
        if failed
        else f"{len(results)} checks, all passed or skipped"
    )
    return "\n".join(lines)


def render_json(results: Sequence[CheckResult]) -> str:
    """The results as a JSON list, for scripts."""
    return json.dumps([asdict(r) for r in results], indent=2)
