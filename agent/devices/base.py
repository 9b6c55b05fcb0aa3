"""What every driver is given (an EventSink) and what it must offer (Driver)."""

from datetime import datetime
from typing import Protocol

from protocol.coupon_events import (
    CouponRedeemedPayload,
    CouponRejectedPayload,
    StaffLoginPayload,
    StaffLogoutPayload,
)
from protocol.events import DeviceStatusPayload, ScanPayload
from protocol.mirror import MirrorCouponClaimedPayload, MirrorSessionPayload, MirrorTryonPayload
from protocol.printing import PrintCompletedPayload, PrintFailedPayload
from protocol.wire import DeviceHealth

Payload = (
    ScanPayload
    | DeviceStatusPayload
    | PrintCompletedPayload
    | PrintFailedPayload
    | MirrorSessionPayload
    | MirrorTryonPayload
    | MirrorCouponClaimedPayload
    | CouponRedeemedPayload
    | CouponRejectedPayload
    | StaffLoginPayload
    | StaffLogoutPayload
)


class EventSink(Protocol):
    """Where drivers hand events; `capture` returns only once the event is durable."""

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Wrap `payload` in an envelope and commit it to the outbox before returning.

        A second capture with the same `idempotency_key` is a no-op (the outbox keeps keys).
        """
        ...

    async def count_loss(self, reason: str, count: int = 1) -> None:
        """Persist events lost before capture (e.g. a flood), so heartbeats report them."""
        ...


class Driver(Protocol):
    """One device: `run` keeps it connected until cancelled; `health` is a cheap snapshot."""

    device_id: str
    kind: str

    async def run(self) -> None:
        """Drive the device until cancelled, reconnecting with backoff; never raises on faults."""
        ...

    def health(self) -> DeviceHealth:
        """Current state and counters, for heartbeats and the status page."""
        ...
