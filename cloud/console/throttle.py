"""Failed-login throttle per client address (per replica, in memory, bounded)."""

import time

# Bounds memory under a spray of addresses; the oldest entries go first.
MAX_TRACKED = 10_000


class LoginThrottle:
    """Refuses an address after `max_failures` failed logins within `window_s`."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self._max = max_failures
        self._window = window_s
        self._failures: dict[str, list[float]] = {}

    def blocked_for(self, remote: str, now: float | None = None) -> float:
        """Seconds until `remote` may try again (0 when it may now)."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.get(remote, ()) if now - t < self._window]
        if recent:
            self._failures[remote] = recent
        else:
            self._failures.pop(remote, None)
        if len(recent) < self._max:
            return 0.0
        return self._window - (now - recent[0])

    def failed(self, remote: str, now: float | None = None) -> None:
        """Count one failed login from `remote`."""
        now = time.monotonic() if now is None else now
        if remote not in self._failures and len(self._failures) >= MAX_TRACKED:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(remote, []).append(now)

    def succeeded(self, remote: str) -> None:
        """Forget the failures of `remote`."""
        self._failures.pop(remote, None)
