"""Retry timing: full-jitter exponential backoff, capped, with Retry-After as a floor."""

import random
from typing import Final

from tenacity import RetryCallState
from tenacity.wait import wait_base

from agent.sync.client import MisconfiguredError, RetryableError, UnauthorizedError

# A revoked token or a wrong URL will not fix itself in seconds: ask rarely (research/gateways.md:
# peers that hammer the cloud on 401 get their stores rate-limited).
SLOW_RETRY_S: Final = 300.0


class FullJitterRetryAfter(wait_base):
    """sleep = U(0, min(cap, base·2^n)) (AWS "full jitter"), but never less than Retry-After."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        ceiling = min(self.cap, self.base * 2 ** (retry_state.attempt_number - 1))
        wait = self.rng.uniform(0, ceiling)
        if isinstance(error, UnauthorizedError | MisconfiguredError):
            wait = max(wait, min(SLOW_RETRY_S, self.cap * 5))
        if isinstance(error, RetryableError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, SLOW_RETRY_S))
        return wait
