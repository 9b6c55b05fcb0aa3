"""The reservation link's state machine: probe spacing grows to its cap, one answer resets it."""

import random

from agent.coupons.reachability import PROBE_INITIAL_S, PROBE_MAX_S, LinkState, Reachability


def state(link: Reachability) -> LinkState:
    return link.state  # a call, so each check reads the state afresh (no narrowing)


def test_failures_space_probes_out_up_to_the_cap_and_success_resets() -> None:
    link = Reachability(random.Random(1))
    assert state(link) is LinkState.UNKNOWN
    assert link.should_try(0.0)
    delays = [link.failed(0.0) for _ in range(10)]
    assert PROBE_INITIAL_S / 2 <= delays[0] <= PROBE_INITIAL_S
    assert all(d <= PROBE_MAX_S for d in delays)
    assert delays[-1] >= PROBE_MAX_S / 2
    assert state(link) is LinkState.OFFLINE
    assert not link.should_try(link.next_probe_at - 0.01)
    assert link.should_try(link.next_probe_at)
    link.succeeded()
    assert state(link) is LinkState.ONLINE
    assert link.should_try(0.0)
    assert link.failed(100.0) <= PROBE_INITIAL_S  # the backoff starts afresh
