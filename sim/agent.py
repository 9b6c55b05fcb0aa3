"""One virtual agent: enrolls, heartbeats, captures events and drains them like the real one.

The drain mirrors agent.sync.drain: one batch in flight, everything captured meanwhile goes
in the next; a batch is resent byte for byte until the cloud answers for it, honouring
Retry-After on 429/503 and backing off with full jitter otherwise (agent.sync.backoff).
"""

import asyncio
import gzip
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from protocol.ids import uuid7_str
from sim.stats import FleetStats

BATCH_MAX = 500  # events per POST, as the real drain worker
GZIP_OVER = 4096  # bytes: smaller bodies are sent plain, as gzip would not pay for itself
GZIP_LEVEL = 1  # agent.sync.drain.GZIP_LEVEL
BACKOFF_BASE_S = 0.5  # agent.sync.backoff: full jitter from here…
BACKOFF_CAP_S = 30.0  # …up to this
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    """One attempt's result: `status` None for a network error or timeout."""

    status: int | None
    answer: Any
    elapsed: float
    retry_after: float | None


@dataclass(frozen=True)
class Credentials:
    """What enrollment gave one virtual agent."""

    agent_id: str
    store_id: str
    token: str


@dataclass(frozen=True)
class AgentPlan:
    """The traffic one agent makes."""

    events_per_s: float
    heartbeat_s: float
    linger_s: float
    duplicate_rate: float  # resend a delivered batch (as if the answer was lost)
    bad_rate: float  # send an event the cloud must reject


class VirtualAgent:
    """Three tasks (capture, drain, heartbeat) sharing one aiohttp session with the fleet."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        credentials: Credentials,
        plan: AgentPlan,
        stats: FleetStats,
        rng: random.Random,
    ) -> None:
        self.url = url
        self.session = session
        self.credentials = credentials
        self.plan = plan
        self.stats = stats
        self.rng = rng
        self.pending: list[tuple[float, bytes]] = []  # (captured at, event JSON)
        self.wake = asyncio.Event()
        self.capturing = True
        self.seq = 0
        self._auth = {"Authorization": f"Bearer {credentials.token}"}

    async def capture(self) -> None:
        """Make events at Poisson times until `capturing` goes False."""
        if self.plan.events_per_s <= 0:
            return
        next_at = time.monotonic() + self.rng.expovariate(self.plan.events_per_s)
        while self.capturing:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            # Every arrival due by now, not one per wake-up: the rate holds even when it is
            # faster than the loop's timer resolution.
            now = time.monotonic()
            while next_at <= now and self.capturing:
                self.pending.append((next_at, self._event()))
                self.stats.events["captured"] += 1
                next_at += self.rng.expovariate(self.plan.events_per_s)
            self.wake.set()

    async def drain(self) -> None:
        """Send what is pending, one batch at a time, until cancelled."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.plan.linger_s:
                await asyncio.sleep(self.plan.linger_s)
            while self.pending:
                batch = self.pending[:BATCH_MAX]
                body = b'{"events":[' + b",".join(e for _, e in batch) + b"]}"
                await self._deliver(body, [t for t, _ in batch])
                del self.pending[: len(batch)]
                if self.rng.random() < self.plan.duplicate_rate:
                    self.stats.retries["simulated_lost_answer"] += 1
                    await self._deliver(body, [])

    async def heartbeat(self) -> None:
        """A heartbeat every `heartbeat_s`, starting at a random phase, until cancelled."""
        await asyncio.sleep(self.rng.uniform(0, self.plan.heartbeat_s))
        while True:
            started = time.monotonic()
            body = orjson.dumps(
                {
                    "sent_at": datetime.now(UTC).isoformat(),
                    "version": "sim",
                    "backlog_events": len(self.pending),
                    "backlog_bytes": sum(len(e) for _, e in self.pending),
                }
            )
            reply = await self._post("/v1/heartbeat", body, "heartbeat")
            if reply.status is not None:
                self.stats.heartbeat.add(reply.elapsed, self.rng.random())
            next_at = started + self.plan.heartbeat_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _deliver(self, body: bytes, captured: list[float]) -> None:
        """POST one batch until it is answered for good; count the per-event results."""
        data = gzip.compress(body, GZIP_LEVEL) if len(body) > GZIP_OVER else body
        attempt = 0
        while True:
            reply = await self._post("/v1/events", data, "events", gz=data is not body)
            status = reply.status
            if status == 200 and reply.answer is not None:
                self.stats.batch.add(reply.elapsed, self.rng.random())
                now = time.monotonic()
                # A deliberate resend (no capture times) is counted apart, so that for the
                # first copies accepted + duplicate + rejected == captured holds.
                prefix = "" if captured else "resent_"
                for n, result in enumerate(reply.answer["results"]):
                    verdict = result["status"]
                    self.stats.events[prefix + verdict] += 1
                    if verdict != "rejected" and n < len(captured):
                        self.stats.delivery.add(now - captured[n], self.rng.random())
                return
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                # The batch itself is refused (auth, size): the real agent dead-letters it.
                self.stats.events["dead_lettered"] += body.count(b'"event_id"')
                return
            attempt += 1
            wait = self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            if reply.retry_after is not None:
                wait = max(wait, reply.retry_after)
            self.stats.retries[f"events {status or 'network'}"] += 1
            await asyncio.sleep(wait)

    async def _post(self, path: str, data: bytes, label: str, gz: bool = False) -> Reply:
        """One POST; never raises for what the network or the cloud does."""
        headers = {**self._auth, "Content-Type": "application/json"}
        if gz:
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        try:
            async with self.session.post(
                self.url + path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as response:
                raw = await response.read()
                elapsed = time.monotonic() - started
                self.stats.requests[f"{label} {response.status}"] += 1
                retry_after = None
                if response.status in (429, 503):
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                answer = orjson.loads(raw) if response.status == 200 else None
                return Reply(response.status, answer, elapsed, retry_after)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            self.stats.requests[f"{label} network_error"] += 1
            return Reply(None, None, time.monotonic() - started, None)

    def _event(self) -> bytes:
        self.seq += 1
        event: dict[str, Any] = {
            "event_id": uuid7_str(),
            "agent_id": self.credentials.agent_id,
            "store_id": self.credentials.store_id,
            "seq": self.seq,
            "device_id": "scanner-front",
            "kind": "scan",
            "occurred_at": datetime.now(UTC).isoformat(),
            "schema": 1,
            "payload": {
                "raw_b64": "NDAxMjM0NTY3ODkwMQ==",
                "text": "4012345678901",
                "symbology": "ean13",
                "classification": "product",
            },
        }
        if self.rng.random() < self.plan.bad_rate:
            event["payload"] = {"text": "missing raw bytes"}  # the cloud must reject it
        return orjson.dumps(event)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
