"""Settings of one cloud service instance."""

import secrets
from dataclasses import dataclass, field

from cloud.console.settings import ConsoleSettings
from cloud.errors import UsageError
from cloud.storage import DEFAULT_POOL_SIZE
from cloud.storage.base import RateLimit
from protocol.constants import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

DEFAULT_DB_URL = "sqlite:///storeedge-cloud.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def new_admin_token() -> str:
    """A fresh random admin bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CloudConfig:
    """Where the data lives, who may administer it, where to listen and how much to accept.

    `max_body_bytes` bounds a request body both as received and after gzip decoding: the
    protocol's batch limit applies to the JSON, and a compressed body larger than its own
    plaintext limit is never legitimate.
    """

    db_url: str = DEFAULT_DB_URL
    admin_token: str = field(default_factory=new_admin_token, repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = MAX_BATCH_BYTES
    # Batches decoded and validated at once; more get 503 + Retry-After instead of queueing.
    # A count for the thousands of small batches of a live fleet, and a byte budget for the
    # big ones of a backlog: each holds ~10× its body as Python objects while validated, so
    # 64 MiB of bodies is about 640 MiB of memory at worst. A body of unknown length
    # (chunked) is charged the full max_body_bytes.
    max_inflight_batches: int = 512
    max_inflight_bytes: int = 64 * 1024 * 1024
    # Heartbeats and enrollments in flight at once, past which they get 503 + Retry-After.
    max_inflight_requests: int = 1024
    # Per-agent event rate (GCRA, the bucket kept in the database so every replica enforces
    # the same one): sustained events/s and the burst a reconnecting agent may send at once.
    # Far above a store's ~0.5 ev/s peak, so it only bites an agent draining a backlog, and
    # then shares a replica's capacity between agents instead of letting one take it all.
    agent_events_per_s: float = 5_000.0
    agent_events_burst: float = 20_000.0
    # Heartbeats closer together than this are answered 429; agents send one every 30 s.
    heartbeat_min_interval_s: float = 0.5
    db_pool_size: int = DEFAULT_POOL_SIZE  # PostgreSQL connections of this process
    # How often this replica runs storage upkeep (partitions ahead, retention); replicas
    # take turns through a database lock, so more replicas do not mean more work.
    maintenance_interval_s: float = 600.0
    # Slow clients (slowloris): a connection must send its first request head, and any
    # request its body, within these (cloud/slowclient.py).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    @property
    def agent_rate(self) -> RateLimit:
        """The per-agent event limit as storage applies it."""
        return RateLimit(rate=self.agent_events_per_s, burst=self.agent_events_burst)

    def __post_init__(self) -> None:
        if not self.admin_token:
            raise UsageError("admin_token must not be empty")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be 0..65535, got {self.port}")
        if self.max_inflight_batches < 1:
            raise UsageError("max_inflight_batches must be at least 1")
        if self.max_inflight_bytes < self.max_body_bytes:
            raise UsageError("max_inflight_bytes must be at least max_body_bytes")
        if self.max_inflight_requests < 1:
            raise UsageError("max_inflight_requests must be at least 1")
        if self.agent_events_per_s <= 0:
            raise UsageError("agent_events_per_s must be positive")
        if self.agent_events_burst < MAX_BATCH_EVENTS:
            # A full batch must fit in the bucket, or it could never be admitted.
            raise UsageError(f"agent_events_burst must be at least {MAX_BATCH_EVENTS}")
        if self.heartbeat_min_interval_s < 0:
            raise UsageError("heartbeat_min_interval_s must not be negative")
        if self.db_pool_size < 1:
            raise UsageError("db_pool_size must be at least 1")
        if self.maintenance_interval_s <= 0:
            raise UsageError("maintenance_interval_s must be positive")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise UsageError("header_timeout_s and body_timeout_s must be positive")
        if self.max_body_bytes < 1024:
            raise UsageError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
