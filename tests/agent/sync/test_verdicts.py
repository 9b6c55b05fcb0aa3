"""The agent's msgspec reading of a batch answer keeps protocol.wire.BatchResponse's contract,
and it and the rows of a batch are nothing the garbage collector has to track."""

import gc

import msgspec
import pytest
from pydantic import ValidationError

from agent.outbox import StoredEvent
from agent.sync.client import BatchVerdicts, EventVerdict
from protocol.wire import BatchResponse

DECODE = msgspec.json.Decoder(BatchVerdicts).decode

GOOD = [
    b'{"results":[]}',
    b'{"results":[{"status":"accepted","event_id":"e1"},{"status":"duplicate"}]}',
    b'{"results":[{"status":"rejected","event_id":null,"reason":"bad seq"}]}',
]
BAD = [
    b'{"results":[{"status":"lost"}]}',  # not one of the three verdicts
    b'{"results":[{"status":"accepted","extra":1}]}',  # unknown field
    b'{"result":[]}',  # unknown field, and results missing
    b'{"results":[{"event_id":"e1"}]}',  # status missing
    b'{"results":[{"status":"rejected","reason":7}]}',  # reason not a string
    b"[]",
    b"not json",
]


@pytest.mark.parametrize("body", GOOD)
def test_what_the_protocol_accepts_decodes_to_the_same_verdicts(body: bytes) -> None:
    expected = BatchResponse.model_validate_json(body)
    got = DECODE(body)
    assert [(r.status, r.event_id, r.reason) for r in got.results] == [
        (r.status, r.event_id, r.reason) for r in expected.results
    ]


@pytest.mark.parametrize("body", BAD)
def test_what_the_protocol_refuses_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationError):
        BatchResponse.model_validate_json(body)
    with pytest.raises(msgspec.DecodeError):
        DECODE(body)


def test_verdicts_are_not_tracked_by_the_garbage_collector() -> None:
    answer = DECODE(b'{"results":[' + b",".join([b'{"status":"accepted"}'] * 500) + b"]}")
    assert not gc.is_tracked(answer)
    assert not any(gc.is_tracked(verdict) for verdict in answer.results)
    assert isinstance(answer.results[0], EventVerdict)


def test_the_rows_a_batch_holds_are_not_tracked_either() -> None:
    assert not gc.is_tracked(StoredEvent(1, b'{"seq":1}'))
