"""HTTP client for the ingest API; turns every failure into a class the caller can act on."""

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
import msgspec
import orjson
from pydantic import ValidationError

from agent.errors import SyncError
from protocol.wire import Heartbeat, HeartbeatResponse


class RetryableError(SyncError):
    """Network failure, timeout, 408, 429 or 5xx: retry the same bytes later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnauthorizedError(RetryableError):
    """401/403: the token is bad or revoked; keep buffering and ask rarely."""


class BatchRejectedError(SyncError):
    """400 or 413 for the whole batch: retrying the same bytes cannot succeed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class MisconfiguredError(RetryableError):
    """Another 4xx (404, 405, 415…): the URL or the cloud is wrong; retry slowly, never drop."""


# The answer to a batch is decoded straight from its bytes into structs the garbage collector
# never tracks (gc=False; they hold no references back): pydantic models over orjson dicts were
# ~1,500 tracked objects per batch, whose survivors set off full collections of the agent's heap
# that held the GIL, and so every capture, for 20–90 ms (docs/BENCHMARKS.md).
class EventVerdict(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """The cloud's verdict on one event of a batch (protocol.wire.EventResult's contract)."""

    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    reason: str | None = None


class BatchVerdicts(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """The answer to POST /v1/events (protocol.wire.BatchResponse's contract)."""

    results: list[EventVerdict]


_VERDICTS = msgspec.json.Decoder(BatchVerdicts)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What enrollment gave this agent."""

    cloud_url: str
    agent_id: str
    store_id: str
    token: str


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date, RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class IngestClient:
    """One aiohttp session to the cloud, authenticated with the agent's token."""

    def __init__(
        self,
        credentials: Credentials,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._base = credentials.cloud_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {credentials.token}"}
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def post_events(self, gzipped_batch: bytes) -> BatchVerdicts:
        """POST one gzipped batch; returns the per-event results or raises a SyncError."""
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        payload = await self._post("/v1/events", gzipped_batch, headers)
        try:
            return _VERDICTS.decode(payload)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            raise RetryableError(f"cloud answered an unreadable batch result: {exc}") from exc

    async def post_heartbeat(self, heartbeat: Heartbeat) -> HeartbeatResponse:
        """POST a heartbeat; returns the cloud's clock."""
        headers = {**self._headers, "Content-Type": "application/json"}
        payload = await self._post("/v1/heartbeat", heartbeat.model_dump_json().encode(), headers)
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise RetryableError("cloud answered 200 with a body that is not JSON") from exc
        try:
            return HeartbeatResponse.model_validate(data)
        except ValidationError as exc:
            raise RetryableError(f"cloud answered an unreadable heartbeat: {exc}") from exc

    def set_token(self, token: str) -> None:
        """Use `token` from the next request on (rotation, re-enrollment)."""
        self._headers = {"Authorization": f"Bearer {token}"}

    async def close(self) -> None:
        """Close the session. Idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The body of a 200 answer; any other status raised as the SyncError it means."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            # No redirects: a 3xx could point an https cloud at http (plaintext), or at
            # another host; it is answered as a misconfiguration instead.
            async with self._session.post(
                self._base + path, data=body, headers=headers, ssl=self._ssl, allow_redirects=False
            ) as response:
                payload = await response.read()
                _classify(response.status, response.headers, payload)
                return payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            # ClientSSLError is a ClientError too: a bad certificate is retried, never bypassed.
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc


def _classify(status: int, headers: Any, payload: bytes) -> None:
    if status == 200:
        return
    reason = _reason(payload)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status in (401, 403):
        raise UnauthorizedError(f"HTTP {status}: {reason}", retry_after)
    if status in (408, 429) or status >= 500:
        raise RetryableError(f"HTTP {status}: {reason}", retry_after)
    if status in (400, 413):
        raise BatchRejectedError(status, reason)
    raise MisconfiguredError(f"HTTP {status}: {reason}", retry_after)


def _reason(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:200].decode("utf-8", "replace") or "no reason given"
    if isinstance(data, dict) and isinstance(error := data.get("error"), str):
        return error[:500]
    return str(data)[:200]
