"""The sans-IO stream reader, the recording table and the cursor file, without any network."""

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.devices.mirror.cursor import Cursor, cursor_path, load_cursor, save_cursor
from agent.devices.mirror.errors import MirrorProtocolError
from agent.devices.mirror.records import RECORDINGS, occurred_at
from agent.devices.mirror.stream import MirrorStream
from protocol.mirror import MirrorCouponClaimedPayload, MirrorSessionPayload, MirrorTryonPayload
from protocol.mirror_api import EVENT_TYPES, MAX_MESSAGE_BYTES, STREAM_ADAPTER, Ack

MIRROR = "MM-1"
AT = "2026-03-01T10:30:00Z"


def hello(epoch: str = "e1", oldest: int = 1, latest: int = 0, mirror_id: str = MIRROR) -> str:
    return json.dumps(
        {
            "type": "hello",
            "mirror_id": mirror_id,
            "epoch": epoch,
            "oldest": oldest,
            "latest": latest,
        }
    )


def event(counter: int, type_: str = "tryon", **fields: Any) -> str:
    body = {"type": type_, "counter": counter, "msg_id": f"m{counter}", "at": AT, "session_id": "s"}
    if type_ in ("tryon", "photo") and "item" not in fields:
        fields["item"] = {"barcode": f"code-{counter}"}
    return json.dumps(body | fields)


def drain(stream: MirrorStream, frames: list[str | bytes]) -> list[int]:
    """Feed frames like the driver does; returns the counters it would record."""
    recorded = []
    for frame in frames:
        step = stream.receive(frame)
        if step.event is not None:
            recorded.append(step.event.counter)
            stream.commit(step.event.counter)
    return recorded


def test_first_contact_records_the_whole_backlog_in_order_and_acks_each() -> None:
    stream = MirrorStream(MIRROR)
    assert stream.subscribe_params() == {"after": "0"}
    assert drain(stream, [hello(latest=3), event(1), event(2), event(3)]) == [1, 2, 3]
    assert stream.cursor == Cursor(MIRROR, "e1", 3)
    assert stream.subscribe_params() == {"after": "3", "epoch": "e1"}


def test_commit_returns_the_ack_frame_and_refuses_to_go_backwards() -> None:
    stream = MirrorStream(MIRROR)
    stream.receive(hello())
    step = stream.receive(event(1))
    assert Ack.model_validate_json(stream.commit(1)) == Ack(counter=1)
    assert step.lost == 0
    with pytest.raises(ValueError, match="does not advance"):
        stream.commit(1)


def test_a_replay_overlapping_the_cursor_is_skipped_as_duplicates() -> None:
    stream = MirrorStream(MIRROR, Cursor(MIRROR, "e1", 2))
    steps = [stream.receive(f) for f in (hello(latest=3), event(1), event(2))]
    assert [s.skipped for s in steps] == [None, "duplicate", "duplicate"]
    assert drain(stream, [event(3)]) == [3]


def test_counters_the_mirror_skipped_are_reported_lost_once() -> None:
    stream = MirrorStream(MIRROR)
    stream.receive(hello())
    drain(stream, [event(1)])
    step = stream.receive(event(5))
    assert (step.event is not None, step.lost) == (True, 3)
    stream.commit(5)
    assert stream.receive(event(6)).lost == 0


def test_events_evicted_from_the_backlog_while_away_are_reported_lost() -> None:
    stream = MirrorStream(MIRROR, Cursor(MIRROR, "e1", 10))
    step = stream.receive(hello(oldest=16, latest=20))
    assert step.lost == 5
    assert drain(stream, [event(n) for n in range(16, 21)]) == [16, 17, 18, 19, 20]


def test_a_new_epoch_restarts_the_numbering_without_counting_loss() -> None:
    stream = MirrorStream(MIRROR, Cursor(MIRROR, "old", 500))
    assert stream.receive(hello(epoch="new", oldest=1, latest=2)).lost == 0
    assert drain(stream, [event(1), event(2)]) == [1, 2]
    assert stream.cursor == Cursor(MIRROR, "new", 2)


def test_numbering_rewound_without_a_new_epoch_is_followed_and_flagged() -> None:
    stream = MirrorStream(MIRROR, Cursor(MIRROR, "e1", 50))
    assert stream.receive(hello(oldest=1, latest=3)).skipped == "rewound"
    assert drain(stream, [event(4)]) == [4]


def test_a_cursor_saved_for_another_mirror_is_ignored() -> None:
    stream = MirrorStream(MIRROR, Cursor("MM-OLD", "e1", 99))
    assert stream.subscribe_params() == {"after": "0"}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"type": "tryon", "counter": ', "malformed"),
        (b'{"type": "tryon"}', "malformed"),  # binary frames are not the protocol
        ('{"type": "tryon", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}', "oversized"),
        (event(2, "size_request", sku="123"), "unknown_type"),
        (event(2, "tryon", item={}), "invalid"),
        ('{"type": "tryon"}', "invalid"),
    ],
)
def test_bad_frames_are_skipped_with_a_reason_and_the_stream_goes_on(
    frame: str | bytes, reason: str
) -> None:
    stream = MirrorStream(MIRROR)
    drain(stream, [hello(), event(1)])
    step = stream.receive(frame)
    assert (step.event, step.skipped) == (None, reason)
    assert drain(stream, [event(3)]) == [3]


def test_a_numbered_bad_message_is_stepped_over_so_a_replay_skips_it_silently() -> None:
    stream = MirrorStream(MIRROR)
    drain(stream, [hello(), event(1)])
    stream.receive(event(2, "size_request"))
    assert stream.cursor == Cursor(MIRROR, "e1", 2)
    stream.subscribe_params()  # reconnect: the mirror replays from 2
    assert drain(stream, [hello(latest=3), event(3)]) == [3]


def test_an_unnumbered_bad_message_shows_as_a_gap_at_the_next_event() -> None:
    stream = MirrorStream(MIRROR)
    drain(stream, [hello(), event(1)])
    stream.receive("{not json")
    assert stream.receive(event(3)).lost == 1


def test_a_stream_must_start_with_the_right_mirrors_hello() -> None:
    with pytest.raises(MirrorProtocolError, match="hello"):
        MirrorStream(MIRROR).receive(event(1))
    with pytest.raises(MirrorProtocolError, match="MM-2"):
        MirrorStream(MIRROR).receive(hello(mirror_id="MM-2"))


def test_every_event_type_has_a_recording() -> None:
    assert set(RECORDINGS) == set(EVENT_TYPES)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            event(1, "session_start", staff_id="guide-3"),
            MirrorSessionPayload(session_id="s", phase="start", staff_id="guide-3"),
        ),
        (
            event(1, "session_end", duration_s=12.5),
            MirrorSessionPayload(session_id="s", phase="end", duration_s=12.5),
        ),
        (
            event(1, "tryon", item={"barcode": "4006381333931"}),
            MirrorTryonPayload(session_id="s", item_code="4006381333931", item_kind="barcode"),
        ),
        (
            event(1, "photo", item={"epc": "3034257bf7194e4000001a85"}),
            MirrorTryonPayload(
                session_id="s", item_code="3034257BF7194E4000001A85", item_kind="epc", photo=True
            ),
        ),
        (
            event(1, "coupon_claim", token="SPRING-10", campaign_hint="spring"),
            MirrorCouponClaimedPayload(session_id="s", token="SPRING-10", campaign_hint="spring"),
        ),
    ],
)
def test_each_event_is_recorded_as_its_protocol_payload(frame: str, expected: Any) -> None:
    message = STREAM_ADAPTER.validate_json(frame)
    assert RECORDINGS[message.type].to_payload(message) == expected


def test_only_coupon_claims_are_never_shed_in_a_flood() -> None:
    assert {t for t, r in RECORDINGS.items() if not r.droppable} == {"coupon_claim"}


def test_the_mirror_clock_is_used_only_when_plausible() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    paris = datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    assert occurred_at(now - timedelta(hours=5), now) == now - timedelta(hours=5)
    converted = occurred_at(paris, now)
    assert converted == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert converted is not None
    assert converted.utcoffset() == timedelta(0)
    assert occurred_at(now + timedelta(hours=1), now) is None
    assert occurred_at(now - timedelta(days=30), now) is None


def test_cursor_file_round_trips_and_a_torn_file_reads_as_none(tmp_path: Path) -> None:
    path = cursor_path(tmp_path, "mirror-1")
    assert load_cursor(path) is None
    save_cursor(path, Cursor(MIRROR, "e1", 41))
    save_cursor(path, Cursor(MIRROR, "e1", 42))
    assert load_cursor(path) == Cursor(MIRROR, "e1", 42)
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    path.write_text('{"mirror_id": "MM-1", "epo')
    assert load_cursor(path) is None
