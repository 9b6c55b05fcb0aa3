"""What each mirror event is recorded as, and whether a flood may shed it: a table."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.devices.base import Payload
from protocol.mirror import MirrorCouponClaimedPayload, MirrorSessionPayload, MirrorTryonPayload
from protocol.mirror_api import ItemRef

# A mirror's clock is trusted for `occurred_at` within these bounds (a replayed backlog is
# legitimately hours old); outside them the agent's own clock is used and the skew counted.
MAX_EVENT_AGE = timedelta(days=7)
MAX_CLOCK_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Recording:
    """How one stream message `type` becomes a recorded payload."""

    to_payload: Callable[[Any], Payload]
    # Sheddable in a flood (DESIGN guarantee 5 keeps coupon events, like constants.DROPPABLE_KINDS).
    droppable: bool


def _item(item: ItemRef) -> dict[str, Any]:
    if item.epc is not None:
        return {"item_code": item.epc, "item_kind": "epc"}
    return {"item_code": item.barcode, "item_kind": "barcode"}


# A photo is recorded as a try-on of the item it shows, flagged photo=True: it is the
# strongest engagement signal for attribution. The image itself stays on the mirror.
RECORDINGS: dict[str, Recording] = {
    "session_start": Recording(
        lambda e: MirrorSessionPayload(session_id=e.session_id, phase="start", staff_id=e.staff_id),
        droppable=True,
    ),
    "session_end": Recording(
        lambda e: MirrorSessionPayload(
            session_id=e.session_id, phase="end", duration_s=e.duration_s
        ),
        droppable=True,
    ),
    "tryon": Recording(
        lambda e: MirrorTryonPayload(session_id=e.session_id, **_item(e.item)), droppable=True
    ),
    "photo": Recording(
        lambda e: MirrorTryonPayload(session_id=e.session_id, photo=True, **_item(e.item)),
        droppable=True,
    ),
    "coupon_claim": Recording(
        lambda e: MirrorCouponClaimedPayload(
            session_id=e.session_id, token=e.token, campaign_hint=e.campaign_hint
        ),
        droppable=False,
    ),
}


def occurred_at(mirror_time: datetime, now: datetime) -> datetime | None:
    """The mirror's timestamp in UTC if plausible against `now`, else None (use the agent's)."""
    if not now - MAX_EVENT_AGE <= mirror_time <= now + MAX_CLOCK_AHEAD:
        return None
    return mirror_time.astimezone(UTC)
