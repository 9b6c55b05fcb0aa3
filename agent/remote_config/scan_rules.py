"""The scan routing a scanner runs: agent.toml's `[scan]` plus the cloud's additions (pure)."""

from agent.config import ScanSection
from protocol.settings import ScanRules


def effective_scan(local: ScanSection, *remote: ScanRules) -> ScanSection:
    """`local` with the remote prefixes and badge patterns added; ValueError if it cannot be.

    The local rules always apply (the file is never overruled, DESIGN.md "Agent config"); a
    badge matches if any pattern matches the whole text, so patterns join as alternatives.
    """
    prefixes = dict.fromkeys(local.coupon_prefixes)
    patterns = dict.fromkeys([local.staff_badge_pattern])
    for rules in remote:
        prefixes.update(dict.fromkeys(rules.coupon_prefixes))
        patterns.update(dict.fromkeys(rules.staff_badge_patterns))
    pattern = local.staff_badge_pattern
    if len(patterns) > 1:
        pattern = "|".join(f"(?:{p})" for p in patterns)
    # ScanSection compiles the pattern: group names clashing across patterns fail here.
    return ScanSection(staff_badge_pattern=pattern, coupon_prefixes=list(prefixes))
