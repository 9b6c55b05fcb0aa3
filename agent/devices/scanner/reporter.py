"""Asyncio glue every loop-based scanner driver shares: state machine, flood guard, capture.

The serial driver's TRANSITIONS table and flood limits are reused as they are, so a scanner
reports the same states and conditions whatever its cable.
"""

import base64
import logging
import random
from datetime import UTC, datetime

from agent.config import ScanSection
from agent.devices.base import EventSink, Payload
from agent.devices.scanner.decode import MAX_RAW_BYTES, decode_frame
from agent.devices.scanner.flood import FloodGuard
from agent.devices.scanner.framer import Frame
from agent.devices.scanner.serial_driver import (
    FLOOD_BURST,
    FLOOD_CALM_S,
    FLOOD_RATE_PER_S,
    LOSS_FLUSH_S,
    TRANSITIONS,
    ConnState,
)
from protocol.events import DeviceStatusPayload, ScanPayload
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

_DETAIL_LEN = 512  # DeviceStatusPayload.detail max_length
COUNTERS = ("frames", "bytes", "decode_errors", "unrecognised", "flood_dropped", "reconnects")


def backoff_delay(
    attempt: int, rng: random.Random, initial_s: float, max_s: float, factor: float = 2.0
) -> float:
    """Seconds before retry number `attempt` (0-based): exponential, capped, jittered."""
    ceiling = min(max_s, initial_s * factor ** min(attempt, 32))
    return ceiling * rng.uniform(0.5, 1.0)  # jitter so a rack of agents does not retry in step


class ScanReporter:
    """One scanner's link state and counters; frames go to the sink in order, each awaited."""

    def __init__(
        self,
        device_id: str,
        sink: EventSink,
        scan: ScanSection,
        flood_max_per_s: float | None,
        flood_burst: int | None,
    ) -> None:
        self.device_id = device_id
        self.state = ConnState.CONNECTING
        self.condition = ""
        self.detail: str | None = None
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._sink = sink
        self._scan = scan
        self._flood_rate = flood_max_per_s or FLOOD_RATE_PER_S
        self._guard = FloodGuard(self._flood_rate, flood_burst or FLOOD_BURST, FLOOD_CALM_S)
        self._unpersisted_drops = 0
        self._drops_flushed_at = 0.0

    @property
    def busy(self) -> bool:
        """True while a flood or unpersisted drops need `tick` calls to settle."""
        return self._guard.flooding or self._unpersisted_drops > 0

    def set_scan(self, scan: ScanSection) -> None:
        """Route later frames with `scan` (remote config); nothing else changes."""
        self._scan = scan

    async def fire(self, event: str, detail: str | None) -> None:
        """Apply one transition; capture device.status only when the state changes."""
        change = TRANSITIONS.get((self.state, event))
        if change is None:
            return
        self.state, self.condition = change
        self.detail = detail[:_DETAIL_LEN] if detail else None
        log.info("%s: %s (%s): %s", self.device_id, self.state.value, self.condition, detail)
        status = DeviceStatusPayload(
            state=self.state.value, condition=self.condition, detail=self.detail
        )
        await self._capture(status)

    async def frames(self, frames: list[Frame], now: float) -> None:
        """Decode, route and capture each frame in order; a flood's excess is counted instead."""
        for frame in frames:
            self.counters["frames"] += 1
            if not self._guard.admit(now):
                self.counters["flood_dropped"] += 1
                self._unpersisted_drops += 1
                await self.fire("flooding", f"over {self._flood_rate:g} frames/s, dropping")
                await self._persist_drops(now)
                continue
            payload = _decode(frame, self._scan)
            if payload.decode_error:
                self.counters["decode_errors"] += 1
            if payload.classification == "unrecognised":
                self.counters["unrecognised"] += 1
            await self._capture(payload)

    async def tick(self, now: float) -> None:
        """Notice the end of a flood and persist drop counts; call it after every wake-up."""
        if self._guard.calmed(now):
            await self._persist_drops(now, force=True)
            await self.fire("calm", f"dropped {self._guard.dropped_since_flood} frames")
        else:
            await self._persist_drops(now)

    async def close(self, now: float) -> None:
        """Persist what is still counted only in memory, and show the device as stopped."""
        await self._persist_drops(now, force=True)
        self.state, self.condition, self.detail = ConnState.OFFLINE, "stopped", None

    def health(self, kind: str, extra: dict[str, int]) -> DeviceHealth:
        """Snapshot for heartbeats; `extra` adds the transport's own counters."""
        return DeviceHealth(
            device_id=self.device_id, kind=kind, state=self.state.value,
            condition=self.condition, detail=self.detail, counters={**self.counters, **extra},
        )  # fmt: skip

    async def _persist_drops(self, now: float, force: bool = False) -> None:
        if not self._unpersisted_drops:
            return
        if not force and now - self._drops_flushed_at < LOSS_FLUSH_S:
            return  # one outbox write per second of flood, not one per dropped frame
        count, self._unpersisted_drops = self._unpersisted_drops, 0
        self._drops_flushed_at = now
        await self._sink.count_loss("flood", count)

    async def _capture(self, payload: Payload) -> None:
        await self._sink.capture(self.device_id, payload, datetime.now(UTC))


def _decode(frame: Frame, scan: ScanSection) -> ScanPayload:
    try:
        return decode_frame(frame, scan)
    except Exception as exc:  # a decoder bug must not lose the raw bytes
        log.exception("decoder failed")
        raw = base64.b64encode(frame.raw[:MAX_RAW_BYTES]).decode("ascii")
        return ScanPayload(raw_b64=raw, text="", decode_error=f"decoder failed: {exc!r}"[:256])
