"""The console storage interface: accounts, sessions, audit, alerts and the fleet roll-up.

Kept apart from `Storage` so each backend adds it on its own (console_sqlite, postgres/console).
Contract points a backend must keep:
- Several stateless cloud replicas may call every method at once. `refresh_fleet`,
  `aggregate_events` and `evaluate_alerts` are each one transaction that reads its watermark
  inside it, so two replicas never count an event twice or open one alert twice; the lease
  only spares the duplicate work.
- At most one alert per (rule, store, device) is active (open or acknowledged) at a time.
- The fleet queries stay fast at 100,000 stores: filter, sort and count on indexed columns.
- Times go in and out as aware UTC datetimes; failures surface as `StorageError`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeAlias

Role: TypeAlias = Literal["admin", "engineer", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "engineer", "viewer")
AlertState: TypeAlias = Literal["open", "acknowledged", "resolved"]
ALERT_STATES: tuple[AlertState, ...] = ("open", "acknowledged", "resolved")
StatusFilter: TypeAlias = Literal["online", "stale", "offline", "no_agent"]
FleetSort: TypeAlias = Literal[
    "store", "seen", "backlog", "oldest", "faults", "last_event", "events_today", "alerts"
]
FLEET_SORTS: tuple[FleetSort, ...] = (
    "store", "seen", "backlog", "oldest", "faults", "last_event", "events_today", "alerts",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A console account (never with its password hash)."""

    user_id: int
    username: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        """False once disabled."""
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live login: who, and the CSRF token every form of this session must carry."""

    user: UserRecord
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited action; `actor` is a username (or `cli`, `anonymous`)."""

    at: datetime
    actor: str
    action: str
    target: str = ""
    detail: str = ""
    remote: str = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit entry with its cursor."""

    audit_id: int
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class FleetThresholds:
    """When a store's lamp turns stale and offline, measured from its last heartbeat."""

    now: datetime
    stale_after_s: float
    offline_after_s: float


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """One page of the fleet list: filters combine with AND; `search` is a substring."""

    thresholds: FleetThresholds
    search: str = ""
    status: StatusFilter | None = None
    faults: bool = False
    backlog: bool = False
    alerts: bool = False
    sort: FleetSort = "store"
    descending: bool = False
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One store as the fleet page shows it."""

    store_id: str
    agents: int
    last_seen_at: datetime | None
    backlog_events: int
    oldest_unsynced_at: datetime | None
    device_faults: int
    dead_letters: int
    version: str
    clock_offset_s: float | None
    last_event_at: datetime | None
    events_today: int
    active_alerts: int


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """Counts over the whole fleet, for the strip at the top of the page."""

    stores: int = 0
    online: int = 0
    stale: int = 0
    offline: int = 0
    no_agent: int = 0
    with_faults: int = 0
    with_backlog: int = 0
    with_alerts: int = 0
    backlog_events: int = 0
    events_today: int = 0


@dataclass(frozen=True, slots=True)
class FleetPage:
    """The rows of one page, how many stores match the filters, and the fleet totals."""

    rows: list[FleetRow]
    matching: int
    totals: FleetTotals


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device's current state as its agent last reported it."""

    device_id: str
    kind: str
    state: str
    condition: str
    detail: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One `device.status` event from the store's log."""

    cursor: int
    device_id: str
    occurred_at: datetime
    state: str
    condition: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class ScanStats:
    """Scans of one device in a window, and how many the agent could not recognise."""

    device_id: str
    scans: int
    unrecognised: int

    @property
    def ratio(self) -> float:
        """Share of unrecognised scans, 0.0 with no scans."""
        return self.unrecognised / self.scans if self.scans else 0.0


@dataclass(frozen=True, slots=True)
class ScanExample:
    """One recent unrecognised scan, for the diagnostics table."""

    cursor: int
    device_id: str
    occurred_at: datetime
    text: str
    symbology: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class HourlyCount:
    """Events of one kind that occurred in one UTC hour."""

    hour: datetime
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class StoreSeries:
    """One store's hourly counts of one kind, oldest first."""

    store_id: str
    total: int
    points: list[tuple[datetime, int]]


@dataclass(frozen=True, slots=True)
class TailEvent:
    """An event for the live tail: the stored JSON as received."""

    cursor: int
    body: str


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """The numbers the alert rules compare against (ConsoleSettings holds the defaults)."""

    agent_offline_s: float
    backlog_age_s: float
    unrecognised_ratio: float
    unrecognised_min_scans: int
    unrecognised_window_s: float


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert; `device_id` is empty for a store-wide rule."""

    alert_id: int
    rule: str
    store_id: str
    device_id: str
    state: AlertState
    summary: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Which alerts to list; `state` None means active (open or acknowledged)."""

    state: AlertState | None = None
    rule: str | None = None
    store_id: str | None = None
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class AlertChanges:
    """What one evaluation did."""

    opened: int = 0
    resolved: int = 0


class ConsoleStorage(Protocol):
    """Async storage behind the console (module docstring has the contract)."""

    async def close(self) -> None:
        """Release the connection and its thread; calling it twice is harmless."""

    # --- accounts, sessions, audit -----------------------------------------------------

    async def add_user(
        self, username: str, password_hash: str, role: Role, now: datetime
    ) -> UserRecord:
        """Create an account; UsageError when the name is taken (case-insensitively)."""

    async def user_login(self, username: str) -> tuple[UserRecord, str] | None:
        """The account and its password hash, or None when unknown."""

    async def list_users(self) -> list[UserRecord]:
        """Every account, ordered by name."""

    async def update_user(
        self,
        username: str,
        now: datetime,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> UserRecord | None:
        """Change an account; a new password or disabling ends its sessions. None: unknown."""

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new session under the hash of its cookie token."""

    async def get_session(
        self, token_hash: str, now: datetime, idle_s: float
    ) -> SessionRecord | None:
        """The live session of an active user, else None; marks it used."""

    async def delete_session(self, token_hash: str) -> None:
        """End a session (logout); unknown hashes are ignored."""

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one entry to the audit log."""

    async def list_audit(self, offset: int, limit: int) -> tuple[list[AuditRecord], int]:
        """Newest first, and how many entries there are in all."""

    # --- background work (any replica, see module docstring) ---------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take or renew the named lease for `holder`; False while another holds it."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up early if `holder` has it."""

    async def refresh_fleet(self, now: datetime) -> int:
        """Fold new heartbeats, enrollments and stores into the roll-up; stores refreshed."""

    async def aggregate_events(self, now: datetime, max_events: int) -> int:
        """Count up to `max_events` new events into the roll-up; how many were taken."""

    async def evaluate_alerts(self, thresholds: AlertThresholds, now: datetime) -> AlertChanges:
        """Open alerts for conditions that hold and resolve those that stopped, atomically."""

    async def prune(self, before: datetime, now: datetime) -> None:
        """Drop hourly counts and resolved alerts older than `before`, and expired sessions."""

    # --- reads --------------------------------------------------------------------------

    async def fleet_page(self, query: FleetQuery) -> FleetPage:
        """One page of stores, the matching count and the fleet totals."""

    async def fleet_row(self, store_id: str) -> FleetRow | None:
        """One store's roll-up, or None when it is not (yet) in the roll-up."""

    async def store_devices(self, store_id: str) -> list[DeviceRecord]:
        """Current device states of a store, by device id."""

    async def status_history(self, store_id: str, limit: int) -> list[StatusChange]:
        """The store's latest `device.status` events, newest first."""

    async def scan_stats(self, store_id: str, since: datetime) -> list[ScanStats]:
        """Per device: scans and unrecognised scans that occurred since `since`."""

    async def scan_examples(self, store_id: str, limit: int) -> list[ScanExample]:
        """The store's latest unrecognised scans, newest first."""

    async def hourly_counts(self, store_id: str, since: datetime) -> list[HourlyCount]:
        """The store's events per hour and kind since `since`, oldest first."""

    async def kind_series(self, kind: str, since: datetime, stores: int) -> list[StoreSeries]:
        """Hourly counts of `kind` for the `stores` stores with most of them since `since`."""

    async def latest_events(
        self, store_id: str, kinds: Sequence[str] | None, limit: int
    ) -> list[TailEvent]:
        """The store's latest events (optionally of these kinds), newest first."""

    async def events_after(self, store_id: str, after: int, limit: int) -> list[TailEvent]:
        """The store's events with cursor > `after`, oldest first."""

    async def list_alerts(self, query: AlertQuery) -> tuple[list[AlertRecord], int]:
        """Matching alerts newest first, and how many match in all."""

    async def acknowledge_alert(self, alert_id: int, username: str, now: datetime) -> bool:
        """Mark an open alert acknowledged; False when it is not open."""

    async def live_version(self) -> tuple[int, int, int]:
        """(fleet, alerts, events) change counters: equal values mean nothing changed."""
