"""Whether to try the cloud for a reservation: an explicit state machine with named backoff.

During an outage every coupon would otherwise wait the full reservation timeout; after a
failure the link is OFFLINE and only probed again after a growing delay, so redemption stays
at local speed until the cloud answers once more.
"""

import random
from enum import StrEnum

PROBE_INITIAL_S = 1.0
PROBE_MAX_S = 30.0
PROBE_FACTOR = 2.0


class LinkState(StrEnum):
    """UNKNOWN until the first answer; OFFLINE holds until `next_probe_at`."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"


class Reachability:
    """The reservation link's state; the caller passes monotonic `now`."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.state = LinkState.UNKNOWN
        self.next_probe_at = 0.0
        self._failures = 0
        self._rng = rng or random.Random()

    def should_try(self, now: float) -> bool:
        """True unless OFFLINE and the next probe is not due yet."""
        return self.state is not LinkState.OFFLINE or now >= self.next_probe_at

    def succeeded(self) -> None:
        """The cloud answered (whatever it said)."""
        self.state, self._failures = LinkState.ONLINE, 0

    def failed(self, now: float) -> float:
        """No answer in time: OFFLINE until a jittered, growing delay passes; returns it."""
        ceiling = min(PROBE_MAX_S, PROBE_INITIAL_S * PROBE_FACTOR ** min(self._failures, 32))
        self._failures += 1
        delay = ceiling * self._rng.uniform(0.5, 1.0)
        self.state, self.next_probe_at = LinkState.OFFLINE, now + delay
        return delay
