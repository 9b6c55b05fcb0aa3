"""The alert rules as the console shows them; the SQL that finds each lives with the backend."""

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "warning"]


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """How one rule is named and explained on the alerts page."""

    title: str
    severity: Severity
    scope: Literal["store", "device"]
    explains: str


# Keys are the rule names storage evaluates (cloud/storage/_console_rollup.RULES_SQL).
RULES: dict[str, RuleInfo] = {
    "agent_offline": RuleInfo(
        "Agent offline",
        "critical",
        "store",
        "No heartbeat for longer than the threshold: the box is off, or its link is down.",
    ),
    "backlog_age": RuleInfo(
        "Backlog too old",
        "warning",
        "store",
        "Events have waited in the store's outbox longer than the threshold.",
    ),
    "printer_paper_out": RuleInfo(
        "Printer out of paper", "warning", "device", "The receipt printer reports paper out."
    ),
    "printer_cover_open": RuleInfo(
        "Printer cover open", "warning", "device", "The receipt printer reports its cover open."
    ),
    "scanner_disconnected": RuleInfo(
        "Scanner disconnected",
        "critical",
        "device",
        "The agent cannot reach the scanner: unplugged cable, dead port or LAN scanner down.",
    ),
    "unrecognised_scans": RuleInfo(
        "Unrecognised scans",
        "warning",
        "device",
        "Too many scans in the window were not products, coupons or badges: staff may be "
        "scanning the wrong code, or the scanner's suffix or symbology settings are off.",
    ),
    "config_refused": RuleInfo(
        "Config refused",
        "warning",
        "store",
        "The agent refused the business config the cloud sent it (a device its agent.toml "
        "lacks, scan rules that clash…) and keeps running on its last good one; the store "
        "page says why.",
    ),
    "dead_letters": RuleInfo(
        "Dead-letter events",
        "critical",
        "store",
        "The cloud refused events; the agent keeps them in its dead-letter table.",
    ),
}
