"""cloud.batch without HTTP: body decoding bounds, batch shape, per-event reasons."""

import gzip
import tracemalloc
from typing import Any

import orjson
import pytest
from cloud_helpers import Agent

from cloud.batch import check_events, decode_body, describe, parse_batch
from cloud.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding
from cloud.storage.base import AgentIdentity
from protocol.constants import MAX_EVENT_BYTES

AGENT = Agent("agt-1", "store-1", "token")
IDENTITY = AgentIdentity("agt-1", "store-1")


@pytest.mark.parametrize("encoding", [None, "identity", " Identity "])
def test_plain_body_passes_through(encoding: str | None) -> None:
    assert decode_body(b'{"events": []}', encoding, 1024) == b'{"events": []}'


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP"])
def test_gzip_body_is_inflated(encoding: str) -> None:
    body = orjson.dumps({"events": [AGENT.event(1)]})
    assert decode_body(gzip.compress(body), encoding, len(body)) == body


def test_gzip_body_exactly_at_the_limit_passes_and_one_past_fails() -> None:
    body = b"x" * 1000
    assert decode_body(gzip.compress(body), "gzip", 1000) == body
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(body + b"x"), "gzip", 1000)


def test_gzip_bomb_never_inflates_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), 9)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, "gzip", 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # the 32 MiB never materialise


def test_plain_body_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_body(b"x" * 1025, None, 1024)


def test_unsupported_encoding() -> None:
    with pytest.raises(UnsupportedEncoding):
        decode_body(b"x", "deflate", 1024)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b"", "not_json"),
        (b'"events"', "not_batch"),
        (b'{"events": null}', "not_batch"),
        (b'{"events": []}', "empty_batch"),
        (orjson.dumps({"events": [{}] * 1001}), "batch_too_long"),
    ],
)
def test_parse_batch_errors_carry_a_counter_key(body: bytes, key: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_batch(body)
    assert caught.value.key == key


def test_check_events_keeps_order_and_splits_rows_from_rejections() -> None:
    good = AGENT.event(1)
    too_big = AGENT.event(2, payload={"raw_b64": "", "text": "x" * MAX_EVENT_BYTES})
    events: list[Any] = [None, good, too_big, AGENT.event(3, store_id="store-9")]
    checked = check_events(events, IDENTITY)
    assert [row.seq for row in checked.rows] == [1]
    assert checked.rows[0].event_id == good["event_id"]
    assert orjson.loads(checked.rows[0].body) == good
    assert checked.rejected == {"not_object": 1, "too_large": 1, "mismatch": 1}
    results = checked.complete([True])
    assert [r["status"] for r in results] == ["rejected", "accepted", "rejected", "rejected"]
    assert results[2]["reason"].startswith("event is ")
    assert results[3]["event_id"] == events[3]["event_id"]


def test_rejected_event_id_is_echoed_only_when_it_looks_like_an_id() -> None:
    checked = check_events([{"event_id": "x" * 500}, {"event_id": 7}], IDENTITY)
    assert [r["event_id"] for r in checked.complete([])] == [None, None]


def test_event_ids_are_canonicalised_for_dedupe() -> None:
    event = AGENT.event(1)
    shouting = {**event, "event_id": event["event_id"].upper()}
    (row,) = check_events([shouting], IDENTITY).rows
    assert row.event_id == event["event_id"]


def test_describe_counts_further_errors() -> None:
    from pydantic import ValidationError

    from protocol.events import EVENT_ADAPTER

    with pytest.raises(ValidationError) as caught:
        EVENT_ADAPTER.validate_python({"kind": "scan"})
    assert describe(caught.value).startswith("event_id: Field required (and ")


def _body(*events: bytes) -> bytes:
    return b'{"events": [' + b", ".join(events) + b"]}"


def test_rows_keep_the_exact_bytes_the_agent_sent() -> None:
    # Spaced out as no serializer of ours would write it: stored unchanged, not re-encoded.
    sent = orjson.dumps(AGENT.event(1), option=orjson.OPT_INDENT_2)
    (row,) = check_events(parse_batch(_body(sent)), IDENTITY).rows
    assert row.body == sent


def test_one_unreadable_event_does_not_cost_the_batch() -> None:
    good = [orjson.dumps(AGENT.event(seq)) for seq in (1, 3)]
    # An integer past 64 bits and a byte that is not UTF-8: each is that event's fault alone.
    huge = orjson.dumps(AGENT.event(2)).replace(b'"seq":2', b'"seq":184467440737095516160')
    not_utf8 = orjson.dumps(AGENT.event(4, payload={"raw_b64": "", "text": "AB"}))
    not_utf8 = not_utf8.replace(b'"AB"', b'"A\xffB"')
    checked = check_events(parse_batch(_body(good[0], huge, good[1], not_utf8)), IDENTITY)
    results = checked.complete([True, True])
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted", "rejected"]
    assert results[1]["reason"] == "seq: must be at most 9223372036854775807"
    assert [row.seq for row in checked.rows] == [1, 3]
    assert checked.rejected == {"invalid": 2}


def test_batch_and_single_event_validation_agree() -> None:
    # The whole-batch fast path and the per-event path must give the same rows.
    events = [orjson.dumps(AGENT.event(seq)) for seq in range(1, 6)]
    fast = check_events(parse_batch(_body(*events)), IDENTITY).rows
    slow = check_events(parse_batch(_body(*events, b"42")), IDENTITY).rows
    assert fast == slow
    assert [row.body for row in fast] == events
