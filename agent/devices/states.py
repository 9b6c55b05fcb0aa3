"""The one device state machine every driver runs: states, signals, the table, and backoff.

A driver only says what it observed (a `Signal`); the table decides the new state and the
condition, and a `device.status` event is captured only when state or condition changed, so a
port that keeps failing to open, or a printer polled every few seconds, emits nothing new.
"""

import logging
import random
from datetime import UTC, datetime
from enum import StrEnum

from agent.devices.base import EventSink
from protocol.events import DeviceStatusPayload

log = logging.getLogger(__name__)

DETAIL_LEN = 512  # DeviceStatusPayload.detail max_length
STOPPED = "stopped"  # the condition health() shows once run() returned; never an event


class DeviceState(StrEnum):
    """What the console shows; `degraded` is connected but impaired (flood, paper out…)."""

    CONNECTING = "connecting"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


class Signal(StrEnum):
    """What a driver observed; the table maps it to a state change."""

    OPENED = "opened"  # port open, TCP connected, stream subscribed
    OPEN_FAILED = "open_failed"  # the first try (or a retry) could not connect
    LOST = "lost"  # an open link broke, or a retry failed after one had been up
    NOT_FOUND = "not_found"  # discovery (mDNS) does not see the device at all
    FAULT = "fault"  # connected but impaired; the driver names the condition
    CLEARED = "cleared"  # the impairment ended; the driver names the condition


_S = DeviceState
FROM_DRIVER = None  # the condition is the one the driver passes with the signal
# (state, signal) → (new state, condition). Unlisted pairs change nothing, and a change to the
# state and condition the device already has emits nothing either.
TRANSITIONS: dict[tuple[DeviceState, Signal], tuple[DeviceState, str | None]] = {
    (_S.CONNECTING, Signal.OPENED): (_S.ONLINE, "connected"),
    (_S.OFFLINE, Signal.OPENED): (_S.ONLINE, "connected"),
    (_S.CONNECTING, Signal.OPEN_FAILED): (_S.OFFLINE, "disconnected"),
    (_S.CONNECTING, Signal.LOST): (_S.OFFLINE, "disconnected"),
    (_S.ONLINE, Signal.LOST): (_S.OFFLINE, "disconnected"),
    (_S.DEGRADED, Signal.LOST): (_S.OFFLINE, "disconnected"),
    (_S.OFFLINE, Signal.LOST): (_S.OFFLINE, "disconnected"),  # was not_found, now refuses
    (_S.CONNECTING, Signal.NOT_FOUND): (_S.OFFLINE, "not_found"),
    (_S.OFFLINE, Signal.NOT_FOUND): (_S.OFFLINE, "not_found"),
    (_S.ONLINE, Signal.FAULT): (_S.DEGRADED, FROM_DRIVER),
    (_S.DEGRADED, Signal.FAULT): (_S.DEGRADED, FROM_DRIVER),
    (_S.DEGRADED, Signal.CLEARED): (_S.ONLINE, FROM_DRIVER),
}


class DeviceStateMachine:
    """One device's state, condition and detail; `fire` applies TRANSITIONS, emits on change."""

    def __init__(self, device_id: str, sink: EventSink) -> None:
        self.device_id = device_id
        self._sink = sink
        self.state = DeviceState.CONNECTING
        self.condition = ""
        self.detail: str | None = None

    def start(self) -> None:
        """A new run(): connecting, nothing said yet."""
        self.state, self.condition, self.detail = DeviceState.CONNECTING, "", None

    def stop(self) -> None:
        """run() returned: offline, "stopped" (shown in health, not sent as an event)."""
        self.state, self.condition, self.detail = DeviceState.OFFLINE, STOPPED, None

    def apply(
        self, signal: Signal, detail: str | None, condition: str | None = None
    ) -> DeviceStatusPayload | None:
        """Apply one signal; the device.status to capture, or None if nothing changed."""
        change = TRANSITIONS.get((self.state, signal))
        if change is None:
            return None
        state, named = change
        named = named if named is not FROM_DRIVER else condition
        if not named:
            raise ValueError(f"{signal} from {self.state} needs a condition")
        if (state, named) == (self.state, self.condition):
            return None
        self.state, self.condition = state, named
        self.detail = detail[:DETAIL_LEN] if detail else None
        log.info("%s: %s (%s): %s", self.device_id, state.value, named, detail)
        return DeviceStatusPayload(state=state.value, condition=named, detail=self.detail)

    async def fire(self, signal: Signal, detail: str | None, condition: str | None = None) -> bool:
        """Apply one signal and capture its device.status durably; whether one was emitted."""
        payload = self.apply(signal, detail, condition)
        if payload is None:
            return False
        await self._sink.capture(self.device_id, payload, datetime.now(UTC))
        return True


def backoff_delay(
    attempt: int, rng: random.Random, initial_s: float, max_s: float, factor: float = 2.0
) -> float:
    """Seconds before retry number `attempt` (0-based): exponential, capped, full-ish jitter."""
    ceiling = min(max_s, initial_s * factor ** min(attempt, 32))
    return ceiling * rng.uniform(0.5, 1.0)  # jitter so a rack of agents does not retry in step
