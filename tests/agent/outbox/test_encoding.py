"""The hand-assembled envelope must be exactly what the protocol validates and pydantic writes."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import OutboxError
from agent.outbox import Identity, outbox
from agent.outbox.outbox import check_id, encode_pending
from protocol import EVENT_ADAPTER, DeviceStatusPayload, ScanPayload

ids = st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,64}\Z")
texts = st.text(max_size=200)
payloads = st.one_of(
    st.builds(
        ScanPayload,
        raw_b64=st.binary(max_size=100).map(lambda b: __import__("base64").b64encode(b).decode()),
        text=texts,
        aim_id=st.sampled_from([None, "]E0", "]Q1", "]C1"]),
        gs1=st.one_of(st.none(), st.dictionaries(st.sampled_from(["01", "10", "17"]), texts)),
        classification=st.sampled_from(["product", "coupon", "staff_badge", "unrecognised"]),
        reason=st.one_of(st.none(), st.text(max_size=50)),
    ),
    st.builds(
        DeviceStatusPayload,
        state=st.sampled_from(["connecting", "online", "degraded", "offline"]),
        condition=st.text(max_size=20),
        detail=st.one_of(st.none(), texts),
    ),
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(ids, ids, ids, payloads, moments, st.integers(1, 2**53))
def test_assembled_envelope_equals_pydantic_output(
    agent_id: str, store_id: str, device_id: str, payload: object, when: datetime, seq: int
) -> None:
    pending = encode_pending(Identity(agent_id, store_id), device_id, payload, when)  # type: ignore[arg-type]
    body = pending.body(seq)
    event = EVENT_ADAPTER.validate_json(body)
    assert event.model_dump_json().encode() == body
    assert (event.seq, event.device_id, event.occurred_at) == (seq, device_id, when)
    assert event.payload == payload
    assert str(event.event_id) == pending.event_id


def test_non_utc_times_are_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2026, 11, 22, 12, 0, tzinfo=paris)
    pending = encode_pending(Identity("a", "s"), "d", ScanPayload(raw_b64="", text=""), when)
    event = EVENT_ADAPTER.validate_json(pending.body(1))
    assert event.occurred_at == when
    assert event.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("bad", ["", "has space", 'quo"te', "x" * 65, "ünï"])
def test_ids_that_could_break_the_json_are_refused(bad: str) -> None:
    with pytest.raises(OutboxError):
        check_id(bad, "device_id")


def test_the_constant_parts_cache_stays_bounded_and_right_past_its_bound() -> None:
    identity = Identity("a", "s")
    when = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # whole second: no fraction written
    payload = ScanPayload(raw_b64="", text="")
    for i in range(outbox._CACHE_MAX + 10):
        encode_pending(identity, f"device-{i}", payload, when)
    assert len(outbox._TAIL_PARTS) <= outbox._CACHE_MAX
    for device_id in ("device-0", f"device-{outbox._CACHE_MAX + 9}"):
        body = encode_pending(identity, device_id, payload, when).body(3)
        event = EVENT_ADAPTER.validate_json(body)
        assert event.model_dump_json().encode() == body
        assert (event.device_id, event.occurred_at) == (device_id, when)
