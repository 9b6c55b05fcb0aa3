"""Issue 8 in CI: 50 random kill -9 points (agent and cloud) behind a faulty WAN; invariants hold.

Real processes (`storeedge agent run`, `storeedge cloud serve`), a pty scanner, the till's
POS endpoint and a LAN printer emulator printing vouchers. The proxy cycles through bad-WAN
spells (errors, resets and truncated answers after the cloud committed, throttling, delays),
a black hole and clean spells while the kills land. bench/chaos runs the same with 1,000.
"""

import os
from pathlib import Path

from hardware.faults.chaos import ChaosRun, ChaosSettings

KILLS = int(os.environ.get("STOREEDGE_CHAOS_KILLS", "50"))


def test_random_kills_behind_a_faulty_wan_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    run = ChaosRun(tmp_path, ChaosSettings(kills=KILLS, seed=20261202, max_kill_delay_s=2.2))
    result = run.run()
    summary = result.summary()
    verdict = result.verdict
    assert verdict.ok, summary
    assert result.agent_kills + result.cloud_kills == KILLS
    assert result.cloud_kills > 0, summary
    assert result.agent_kills > 0, summary
    # The run must have had something to lose: acknowledged scans and redemptions, vouchers,
    # and faults of every kind that hits a request after the cloud committed it.
    assert len(run.acked.scans) > 100, summary
    assert len(run.acked.redemptions) > 10, summary
    assert result.vouchers_printed > 0, summary
    for fault in ("error_after", "reset_after", "truncate_after", "blackhole"):
        assert result.proxy_faults.get(fault, 0) > 0, (fault, summary)
    assert result.clean_exit_code == 0, "agent did not stop cleanly on SIGTERM after the run"
