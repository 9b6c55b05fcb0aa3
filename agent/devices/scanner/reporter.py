"""What every scanner driver shares: the device state machine, flood guard, loss counts, capture.

Every scanner, whatever its cable, reports the same states and conditions through one
DeviceStateMachine (agent/devices/states.py) and sheds a flood the same way.
"""

import base64
import logging
from collections import Counter
from datetime import UTC, datetime

from agent.config import ScanSection
from agent.devices.base import EventSink, Payload
from agent.devices.scanner.decode import MAX_RAW_BYTES, decode_frame
from agent.devices.scanner.flood import FloodGuard
from agent.devices.scanner.framer import Frame
from agent.devices.states import DeviceStateMachine, Signal
from protocol.events import ScanPayload
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

# A person scans a few codes a second; a stuck trigger or a scanner echoing a loop sends far
# more. Past this the excess is dropped and counted, and the device is "degraded".
FLOOD_RATE_PER_S = 50.0
FLOOD_BURST = 200
FLOOD_CALM_S = 2.0  # no drop for this long ends the flood
# Losses (flood drops, kernel overflows) reach the outbox's loss counters at most this often:
# one write per second of trouble, not one per dropped frame; always when it ends or stops.
LOSS_FLUSH_S = 1.0
COUNTERS = ("frames", "bytes", "decode_errors", "unrecognised", "flood_dropped", "reconnects")


class ScanReporter:
    """One scanner's state machine and counters; frames go to the sink in order, each awaited."""

    def __init__(
        self,
        device_id: str,
        sink: EventSink,
        scan: ScanSection,
        flood_max_per_s: float | None,
        flood_burst: int | None,
    ) -> None:
        self.device_id = device_id
        self.machine = DeviceStateMachine(device_id, sink)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._sink = sink
        self._scan = scan
        self._flood_rate = flood_max_per_s or FLOOD_RATE_PER_S
        self._guard = FloodGuard(self._flood_rate, flood_burst or FLOOD_BURST, FLOOD_CALM_S)
        self._losses: Counter[str] = Counter()
        self._losses_flushed_at = 0.0

    @property
    def busy(self) -> bool:
        """True while a flood or unpersisted losses need `tick` calls to settle."""
        return self._guard.flooding or bool(self._losses)

    def set_scan(self, scan: ScanSection) -> None:
        """Route later frames with `scan` (remote config); nothing else changes."""
        self._scan = scan

    async def fire(self, signal: Signal, detail: str | None, condition: str | None = None) -> None:
        """Apply one signal to the state machine (device.status only on change)."""
        await self.machine.fire(signal, detail, condition)

    async def opened(self, detail: str, *, redial: bool = False) -> None:
        """The link is up: count a reconnect if it had been down (or `redial`), then fire."""
        if redial or self.machine.state == "offline":
            self.counters["reconnects"] += 1
        await self.fire(Signal.OPENED, detail)

    async def frames(self, frames: list[Frame], now: float) -> None:
        """Decode, route and capture each frame in order; a flood's excess is counted instead."""
        for frame in frames:
            self.counters["frames"] += 1
            if not self._guard.admit(now):
                self.counters["flood_dropped"] += 1
                self._losses["flood"] += 1
                detail = f"over {self._flood_rate:g} frames/s, dropping"
                await self.fire(Signal.FAULT, detail, "flooding")
                await self._persist_losses(now)
                continue
            payload = _decode(frame, self._scan)
            if payload.decode_error:
                self.counters["decode_errors"] += 1
            if payload.classification == "unrecognised":
                self.counters["unrecognised"] += 1
            await self._capture(payload)

    def count_loss(self, reason: str, count: int = 1) -> None:
        """Note events lost before they became frames (e.g. SYN_DROPPED); persisted by `tick`."""
        if count > 0:
            self._losses[reason] += count

    async def tick(self, now: float) -> None:
        """Notice the end of a flood and persist loss counts; call it after every wake-up."""
        if self._guard.calmed(now):
            await self._persist_losses(now, force=True)
            detail = f"dropped {self._guard.dropped_since_flood} frames"
            await self.fire(Signal.CLEARED, detail, "flood_ended")
        else:
            await self._persist_losses(now)

    async def close(self, now: float) -> None:
        """Persist what is still counted only in memory, and show the device as stopped."""
        await self._persist_losses(now, force=True)
        self.machine.stop()

    def health(self, kind: str, extra: dict[str, int]) -> DeviceHealth:
        """Snapshot for heartbeats; `extra` adds the transport's own counters."""
        m = self.machine
        return DeviceHealth(
            device_id=self.device_id, kind=kind, state=m.state.value, condition=m.condition,
            detail=m.detail, counters={**self.counters, **extra},
        )  # fmt: skip

    async def _persist_losses(self, now: float, force: bool = False) -> None:
        if not self._losses:
            return
        if not force and now - self._losses_flushed_at < LOSS_FLUSH_S:
            return
        losses, self._losses = self._losses, Counter()
        self._losses_flushed_at = now
        for reason, count in losses.items():
            await self._sink.count_loss(reason, count)

    async def _capture(self, payload: Payload) -> None:
        await self._sink.capture(self.device_id, payload, datetime.now(UTC))


def _decode(frame: Frame, scan: ScanSection) -> ScanPayload:
    try:
        return decode_frame(frame, scan)
    except Exception as exc:  # a decoder bug must not lose the raw bytes
        log.exception("decoder failed")
        raw = base64.b64encode(frame.raw[:MAX_RAW_BYTES]).decode("ascii")
        return ScanPayload(raw_b64=raw, text="", decode_error=f"decoder failed: {exc!r}"[:256])
