"""The invariant checker fails each kind of broken run, and passes an honest one."""

from typing import Any

from hardware.faults.invariants import (
    Acknowledged,
    AgentAccount,
    check,
    is_marked_copy,
    voucher_refs,
)

AGENT = "agent-1"


def _event(seq: int, kind: str = "scan", **payload: Any) -> dict[str, Any]:
    return {"event_id": f"e-{seq}", "agent_id": AGENT, "seq": seq, "kind": kind,
            "payload": payload}  # fmt: skip


def _honest() -> tuple[Acknowledged, list[dict[str, Any]]]:
    acked = Acknowledged(scans=["A", "B"], redemptions=["r-1"])
    events = [
        _event(1, "device.status", state="online"),
        _event(2, text="A"),
        _event(3, text="B"),
        _event(4, "coupon.redeemed", redemption_id="r-1"),
    ]
    return acked, events


def test_an_honest_run_passes() -> None:
    acked, events = _honest()
    verdict = check(acked, events, [AgentAccount(AGENT, {})], ["r-1"])
    assert verdict.ok, verdict.summary()
    assert verdict.acknowledged == 3
    assert verdict.unacknowledged_arrived == 1  # the device.status


def test_an_acknowledged_scan_missing_from_the_cloud_is_lost() -> None:
    acked, events = _honest()
    verdict = check(acked, [e for e in events if e["seq"] != 3], [AgentAccount(AGENT, {})])
    assert verdict.lost == ["scan B acknowledged, not in the cloud"]
    # ...and its seq is a gap nothing explains.
    assert verdict.unexplained_gaps == {AGENT: 1}
    assert not verdict.ok


def test_a_gap_counted_as_a_cap_drop_or_dead_letter_is_explained() -> None:
    acked = Acknowledged(scans=["A"])
    events = [_event(1, text="A"), _event(4, text="X")]
    assert check(acked, events, [AgentAccount(AGENT, {"outbox_full": 1}, dead_letters=1)]).ok
    assert not check(acked, events, [AgentAccount(AGENT, {"outbox_full": 1})]).ok
    # A quarantined outbox's jump is the alert's to explain, not a loss.
    jumped = [_event(1, text="A"), _event(2**40 + 1, text="Y")]
    assert check(acked, jumped, [AgentAccount(AGENT, {}, seq_jumps=[2**40 + 1])]).ok
    assert not check(acked, jumped, [AgentAccount(AGENT, {}, seq_jumps=[2**40 + 2])]).ok


def test_duplicates_and_reused_seqs_are_caught() -> None:
    acked, events = _honest()
    twice = [*events, {**events[1], "event_id": "e-other", "seq": 5}]
    verdict = check(acked, twice, [AgentAccount(AGENT, {})])
    assert verdict.duplicated == ["scan A in the cloud 2×"]
    reused = [*events, {**events[1], "event_id": "e-again", "payload": {"text": "Z"}}]
    assert check(acked, reused, [AgentAccount(AGENT, {})]).seq_reused == [f"{AGENT} seq 2 used 2×"]


def test_a_dropped_or_dead_lettered_redemption_breaks_the_coupon_invariant() -> None:
    acked, events = _honest()
    dead = AgentAccount(AGENT, {}, dead_letters=1, dead_kinds={"coupon.redeemed": 1})
    assert check(acked, events, [dead]).coupon_violations == [
        f"{AGENT}: 1 coupon.redeemed dead-lettered"
    ]
    lost = AgentAccount(AGENT, {"coupon_flood": 2})
    assert not check(acked, events, [lost]).ok


def test_a_voucher_printed_twice_is_caught() -> None:
    acked, events = _honest()
    printed = voucher_refs([b"SE-REDEEMED:r-1", b"https://shop.example/x", b"SE-REDEEMED:r-1"])
    assert printed == ["r-1", "r-1"]
    assert check(acked, events, [AgentAccount(AGENT, {})], printed).printed_twice == ["r-1"]


def test_one_marked_copy_is_allowed_a_second_copy_or_an_unmarked_reprint_is_not() -> None:
    acked, events = _honest()
    account = [AgentAccount(AGENT, {})]
    once_and_copy = check(acked, events, account, ["r-1"], ["r-1"])
    assert once_and_copy.ok
    assert once_and_copy.marked_copies == 1
    assert check(acked, events, account, ["r-1"], ["r-1", "r-1"]).printed_twice == ["r-1"]
    assert check(acked, events, account, [], ["r-2", "r-2"]).printed_twice == ["r-2"]


def test_a_copy_is_told_by_its_printed_title() -> None:
    assert is_marked_copy(["*** COPY ***", "Reprint: the first print may have come out"])
    assert not is_marked_copy(["COUPON REDEEMED", "10.00 EUR"])
