"""Settings of the console: lamp and alert thresholds, timings, sessions, password cost."""

from dataclasses import dataclass

from cloud.errors import UsageError
from cloud.storage.console import AlertThresholds

MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """Defaults suit agents heartbeating every 30 s; every number is one knob, in seconds."""

    enabled: bool = True
    # The fleet lamp: online while the last heartbeat is younger than stale_after_s (three
    # missed 30 s beats), stale until offline_after_s, offline after.
    stale_after_s: float = 90.0
    offline_after_s: float = 5 * MINUTE
    # Alert rules (docs/CONSOLE.md "Alerts").
    alert_agent_offline_s: float = 5 * MINUTE
    alert_backlog_age_s: float = 15 * MINUTE
    alert_unrecognised_ratio: float = 0.3
    alert_unrecognised_min_scans: int = 20
    alert_unrecognised_window_s: float = 60 * MINUTE
    # The evaluator: one replica at a time holds the lease and ticks this often.
    evaluate_every_s: float = 10.0
    lease_ttl_s: float = 30.0
    # Hourly counts and resolved alerts are kept this long.
    retention_s: float = 8 * 24 * 60 * MINUTE
    # Live views: how often one poller per replica looks for changes.
    live_poll_s: float = 1.0
    # Sessions: absolute lifetime and idle timeout.
    session_ttl_s: float = 12 * 60 * MINUTE
    session_idle_s: float = 2 * 60 * MINUTE
    # Secure + __Host- cookies. Browsers accept them from https:// and from http://127.0.0.1
    # or localhost; turn off only behind plain HTTP on a trusted LAN.
    secure_cookies: bool = True
    # Argon2id cost (RFC 9106 §4, second recommended option: t=3, 64 MiB, 4 lanes).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 64 * 1024
    argon2_parallelism: int = 4
    # Login throttle per client address.
    login_max_failures: int = 5
    login_window_s: float = 5 * MINUTE
    page_size: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.stale_after_s < self.offline_after_s:
            raise UsageError("console: need 0 < stale_after_s < offline_after_s")
        if self.evaluate_every_s <= 0 or self.lease_ttl_s <= self.evaluate_every_s:
            raise UsageError("console: lease_ttl_s must exceed evaluate_every_s (both > 0)")
        if not 0 < self.alert_unrecognised_ratio < 1:
            raise UsageError("console: alert_unrecognised_ratio must be between 0 and 1")
        if self.live_poll_s <= 0 or self.page_size < 1:
            raise UsageError("console: live_poll_s and page_size must be positive")

    @property
    def thresholds(self) -> AlertThresholds:
        """The alert rules' numbers as storage takes them."""
        return AlertThresholds(
            agent_offline_s=self.alert_agent_offline_s,
            backlog_age_s=self.alert_backlog_age_s,
            unrecognised_ratio=self.alert_unrecognised_ratio,
            unrecognised_min_scans=self.alert_unrecognised_min_scans,
            unrecognised_window_s=self.alert_unrecognised_window_s,
        )
