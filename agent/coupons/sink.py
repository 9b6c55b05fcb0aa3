"""The EventSink drivers get: the outbox, plus coupon scans, staff badges and mirror coupon
claims handed to the coupon flow once their own event is durable."""

from datetime import datetime
from pathlib import Path

from agent.coupons.flow import CouponFlow
from agent.devices.base import Payload
from agent.outbox import Outbox
from protocol.events import ScanPayload
from protocol.mirror import MirrorCouponClaimedPayload


class CouponSink:
    """Capture through the outbox, then route; `capture` returns after both are durable."""

    def __init__(self, outbox: Outbox, flow: CouponFlow) -> None:
        self._outbox = outbox
        self._flow = flow

    @property
    def path(self) -> Path:
        """The outbox file (drivers find the state dir beside it)."""
        return self._outbox.path

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Commit `payload`; a coupon or badge then goes through the flow before returning, so
        a scanner reads its next frame only once the redemption is decided and recorded."""
        await self._outbox.capture(device_id, payload, occurred_at, idempotency_key=idempotency_key)
        if isinstance(payload, ScanPayload):
            if payload.classification == "coupon":
                await self._flow.present(payload.text, device_id, "scanner")
            elif payload.classification == "staff_badge":
                await self._flow.badge(device_id, payload.text)
        elif isinstance(payload, MirrorCouponClaimedPayload):
            await self._flow.present(payload.token, device_id, "mirror")

    async def count_loss(self, reason: str, count: int = 1) -> None:
        """Persist a loss counted before capture."""
        await self._outbox.count_loss(reason, count)
