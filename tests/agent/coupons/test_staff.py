"""Staff sessions, sans-IO: login, logout by the same badge, hand-over, idle timeout."""

from agent.coupons.staff import StaffEvent, StaffSessions
from protocol.coupon_events import StaffLogoutPayload


def kinds(events: list[StaffEvent]) -> list[tuple[str, str, str]]:
    out = []
    for device, payload in events:
        reason = getattr(payload, "reason", "login")
        out.append((device, payload.staff_id, reason))
    return out


def test_badge_logs_in_and_the_same_badge_logs_out() -> None:
    staff = StaffSessions(timeout_s=60)
    assert kinds(staff.badge("d1", "S-1", 0)) == [("d1", "S-1", "login")]
    assert staff.attribute("d1", 10) == ("S-1", [])
    assert staff.attribute("d2", 10) == (None, [])
    assert kinds(staff.badge("d1", "S-1", 20)) == [("d1", "S-1", "logout")]
    assert staff.attribute("d1", 21) == (None, [])


def test_another_badge_replaces_the_guide() -> None:
    staff = StaffSessions(timeout_s=60)
    staff.badge("d1", "S-1", 0)
    assert kinds(staff.badge("d1", "S-2", 5)) == [("d1", "S-1", "replaced"), ("d1", "S-2", "login")]
    assert staff.current() == {"d1": "S-2"}


def test_idle_sessions_time_out_and_activity_keeps_them_alive() -> None:
    staff = StaffSessions(timeout_s=60)
    staff.badge("d1", "S-1", 0)
    staff.badge("d2", "S-2", 0)
    assert staff.attribute("d1", 50)[0] == "S-1"  # activity at 50 pushes d1's timeout to 110
    events = staff.expire(100)
    assert kinds(events) == [("d2", "S-2", "timeout")]
    logout = events[0][1]
    assert isinstance(logout, StaffLogoutPayload)
    assert logout.duration_s == 60  # ended at its last activity + timeout
    staff_id, events = staff.attribute("d1", 111)
    assert staff_id is None
    assert kinds(events) == [("d1", "S-1", "timeout")]
