"""Settings of one cloud service instance."""

import secrets
from dataclasses import dataclass, field

from cloud.errors import UsageError
from protocol.constants import MAX_BATCH_BYTES

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
    # Each can hold ~10× its 4 MiB body as Python objects, so this bounds memory too.
    max_inflight_batches: int = 16
    # Slow clients (slowloris): a connection must send its first request head, and any
    # request its body, within these (cloud/slowclient.py).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.admin_token:
            raise UsageError("admin_token must not be empty")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be 0..65535, got {self.port}")
        if self.max_inflight_batches < 1:
            raise UsageError("max_inflight_batches must be at least 1")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise UsageError("header_timeout_s and body_timeout_s must be positive")
        if self.max_body_bytes < 1024:
            raise UsageError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
