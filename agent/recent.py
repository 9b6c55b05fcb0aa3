"""The last events each device produced, for the status page, `test-scan` and `test-print`.

A tap between the drivers and the outbox: every capture is forwarded unchanged (and is
durable before `capture` returns, as before); scans and print outcomes are also remembered in
a small ring, and waiters for "the next scan of device X" are woken.
"""

import asyncio
import base64
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.devices.base import EventSink, Payload
from protocol.events import ScanPayload
from protocol.printing import PrintCompletedPayload, PrintFailedPayload

RECENT_SCANS = 50
RAW_PREVIEW_BYTES = 64  # the status page shows this much of a scan's bytes, in hex


@dataclass(frozen=True, slots=True)
class SeenScan:
    """One scan as the field engineer sees it: what was read and how it was understood."""

    device_id: str
    at: datetime
    text: str
    symbology: str | None
    aim_id: str | None
    classification: str
    reason: str | None
    decode_error: str | None
    gs1: dict[str, str] | None
    raw_hex: str
    raw_len: int

    def as_json(self) -> dict[str, Any]:
        """The JSON shape of the status API."""
        return {
            "device_id": self.device_id,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "text": self.text,
            "symbology": self.symbology,
            "aim_id": self.aim_id,
            "classification": self.classification,
            "reason": self.reason,
            "decode_error": self.decode_error,
            "gs1": self.gs1,
            "raw_hex": self.raw_hex,
            "raw_len": self.raw_len,
        }


def seen_scan(device_id: str, payload: ScanPayload, at: datetime) -> SeenScan:
    """Summarise a captured scan for display."""
    raw = base64.b64decode(payload.raw_b64)
    return SeenScan(
        device_id=device_id,
        at=at,
        text=payload.text,
        symbology=payload.symbology,
        aim_id=payload.aim_id,
        classification=payload.classification,
        reason=payload.reason,
        decode_error=payload.decode_error,
        gs1=dict(payload.gs1) if payload.gs1 else None,
        raw_hex=raw[:RAW_PREVIEW_BYTES].hex(" "),
        raw_len=len(raw),
    )


class RecentEvents:
    """A ring of recent scans and futures for the next scan or print outcome of a device."""

    def __init__(self, size: int = RECENT_SCANS) -> None:
        self.scans: deque[SeenScan] = deque(maxlen=size)
        self._scan_waiters: dict[str, list[asyncio.Future[SeenScan]]] = {}
        self._print_waiters: dict[str, asyncio.Future[Payload]] = {}

    def record(self, device_id: str, payload: Payload, at: datetime) -> None:
        """Remember `payload` if it is a scan; settle whoever waits for it."""
        if isinstance(payload, ScanPayload):
            scan = seen_scan(device_id, payload, at)
            self.scans.append(scan)
            for waiter in self._scan_waiters.pop(device_id, []):
                if not waiter.done():
                    waiter.set_result(scan)
        elif isinstance(payload, PrintCompletedPayload | PrintFailedPayload):
            outcome = self._print_waiters.pop(payload.job_id, None)
            if outcome is not None and not outcome.done():
                outcome.set_result(payload)

    async def next_scan(self, device_id: str, timeout_s: float) -> SeenScan:
        """The next scan `device_id` captures; TimeoutError after `timeout_s`."""
        waiter: asyncio.Future[SeenScan] = asyncio.get_running_loop().create_future()
        self._scan_waiters.setdefault(device_id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        finally:
            waiters = self._scan_waiters.get(device_id, [])
            if waiter in waiters:
                waiters.remove(waiter)

    def expect_print(self, job_id: str) -> "asyncio.Future[Payload]":
        """A future settled with the print.completed/print.failed payload of `job_id`."""
        waiter: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._print_waiters[job_id] = waiter
        return waiter

    def forget_print(self, job_id: str) -> None:
        """Stop waiting for `job_id` (the caller gave up)."""
        self._print_waiters.pop(job_id, None)


class TappedSink:
    """EventSink that forwards to `inner` and, once durable, shows the event to `recent`."""

    def __init__(self, inner: EventSink, recent: RecentEvents) -> None:
        self._inner = inner
        self._recent = recent
        self.path = getattr(inner, "path", None)  # drivers find the state dir by it

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Commit through the outbox first (guarantee 1), then record."""
        await self._inner.capture(device_id, payload, occurred_at, idempotency_key=idempotency_key)
        self._recent.record(device_id, payload, occurred_at or datetime.now(UTC))

    async def count_loss(self, reason: str, count: int = 1) -> None:
        """Forwarded unchanged."""
        await self._inner.count_loss(reason, count)
