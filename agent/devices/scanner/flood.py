"""Sans-IO flood guard: a token bucket that says when a stuck scanner starts and stops flooding."""


class TokenBucket:
    """`rate_per_s` sustained, `burst` at once; `take(now)` spends one token if there is one."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self._updated_at: float | None = None

    def take(self, now: float) -> bool:
        """True if one event may pass at monotonic time `now`."""
        if self._updated_at is not None:
            elapsed = max(0.0, now - self._updated_at)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        self._updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FloodGuard:
    """Drops frames past the bucket; `flooding` stays on until `calm_s` passes with no drop."""

    def __init__(self, rate_per_s: float, burst: float, calm_s: float) -> None:
        self._bucket = TokenBucket(rate_per_s, burst)
        self._calm_s = calm_s
        self._last_drop_at: float | None = None
        self.dropped_since_flood = 0

    @property
    def flooding(self) -> bool:
        """True from the first drop until the line has been calm for `calm_s`."""
        return self._last_drop_at is not None

    def admit(self, now: float) -> bool:
        """True if this frame may pass; a refused frame is a flood drop."""
        if self._bucket.take(now):
            return True
        if self._last_drop_at is None:
            self.dropped_since_flood = 0
        self._last_drop_at = now
        self.dropped_since_flood += 1
        return False

    def calmed(self, now: float) -> bool:
        """True once, when a flood ends (no drop for `calm_s`); call it on every tick."""
        if self._last_drop_at is None or now - self._last_drop_at < self._calm_s:
            return False
        self._last_drop_at = None
        return True
