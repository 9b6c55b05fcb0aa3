"""Shopping-guide attribution per device: a badge opens a session, a second scan or a timeout
ends it (sans-IO: the caller passes `now` and records the events returned)."""

from dataclasses import dataclass
from typing import Literal

from protocol.coupon_events import StaffLoginPayload, StaffLogoutPayload

StaffEvent = tuple[str, StaffLoginPayload | StaffLogoutPayload]  # (device_id, payload)


@dataclass(slots=True)
class _Session:
    staff_id: str
    since: float
    last_active: float


class StaffSessions:
    """Who is attributed at each device; sessions end `timeout_s` after their last activity."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._sessions: dict[str, _Session] = {}

    def badge(self, device_id: str, staff_id: str, now: float) -> list[StaffEvent]:
        """A badge scanned at `device_id`: the same guide again logs out, another takes over."""
        events = self.expire(now, device_id)
        current = self._sessions.pop(device_id, None)
        if current is not None:
            same = current.staff_id == staff_id
            events.append(_logout(device_id, current, "logout" if same else "replaced", now))
            if same:
                return events
        self._sessions[device_id] = _Session(staff_id, now, now)
        events.append((device_id, StaffLoginPayload(staff_id=staff_id, source="badge")))
        return events

    def attribute(self, device_id: str, now: float) -> tuple[str | None, list[StaffEvent]]:
        """The guide to credit for activity at `device_id` now (refreshing their session)."""
        events = self.expire(now, device_id)
        session = self._sessions.get(device_id)
        if session is None:
            return None, events
        session.last_active = now
        return session.staff_id, events

    def expire(self, now: float, device_id: str | None = None) -> list[StaffEvent]:
        """End sessions idle past the timeout (one device, or all); their logout events."""
        ids = [device_id] if device_id is not None else list(self._sessions)
        events: list[StaffEvent] = []
        for key in ids:
            session = self._sessions.get(key)
            if session is not None and now - session.last_active >= self.timeout_s:
                del self._sessions[key]
                events.append(
                    _logout(key, session, "timeout", session.last_active + self.timeout_s)
                )
        return events

    def current(self) -> dict[str, str]:
        """device_id → staff_id of every open session."""
        return {device: s.staff_id for device, s in self._sessions.items()}


def _logout(
    device_id: str, session: _Session, reason: Literal["logout", "timeout", "replaced"], at: float
) -> StaffEvent:
    payload = StaffLogoutPayload(
        staff_id=session.staff_id, reason=reason, duration_s=round(max(0.0, at - session.since), 3)
    )
    return device_id, payload
