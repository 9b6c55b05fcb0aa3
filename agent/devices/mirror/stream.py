"""Sans-IO reader of a mirror's /events stream: parse, skip replays, count gaps, keep a cursor."""

import json
from dataclasses import dataclass, replace

from pydantic import ValidationError

from agent.devices.mirror.cursor import Cursor
from agent.devices.mirror.errors import MirrorProtocolError
from protocol.mirror_api import MAX_MESSAGE_BYTES, STREAM_ADAPTER, Ack, Hello, MirrorEvent

# Pydantic error types meaning "the `type` tag names no message we know" (a newer mirror).
_UNKNOWN_TAG = frozenset({"union_tag_invalid"})
# Every value of Step.skipped; the driver keeps a health counter for each.
SKIP_REASONS = ("malformed", "oversized", "invalid", "unknown_type", "duplicate", "rewound")


@dataclass(frozen=True, slots=True)
class Step:
    """What one frame meant. Record `event` durably, then `commit` its counter."""

    event: MirrorEvent | None = None
    hello: Hello | None = None
    skipped: str | None = None  # one of SKIP_REASONS: why there is nothing to record
    lost: int = 0  # events the mirror numbered that will never reach us (evicted or unreadable)


class MirrorStream:
    """Tracks one mirror's cursor across connections; `receive` each frame, `commit` each event."""

    def __init__(self, mirror_id: str, cursor: Cursor | None = None) -> None:
        self.mirror_id = mirror_id
        # A cursor saved for another mirror (the device was swapped) means nothing here.
        self.cursor = cursor if cursor is not None and cursor.mirror_id == mirror_id else None
        self.greeted = False

    def subscribe_params(self) -> dict[str, str]:
        """Query for GET /events on a new connection; also resets the per-connection state."""
        self.greeted = False
        if self.cursor is None:
            return {"after": "0"}
        return {"after": str(self.cursor.counter), "epoch": self.cursor.epoch}

    def receive(self, frame: str | bytes) -> Step:
        """Interpret one text frame; raises MirrorProtocolError if the stream cannot go on."""
        if isinstance(frame, bytes):
            return Step(skipped="malformed")  # the protocol is JSON text frames only
        if len(frame) > MAX_MESSAGE_BYTES:
            return Step(skipped="oversized")
        try:
            message = STREAM_ADAPTER.validate_json(frame)
        except ValidationError as exc:
            return self._reject(frame, exc)
        if isinstance(message, Hello):
            return self._greet(message)
        if not self.greeted or self.cursor is None:
            raise MirrorProtocolError("the stream did not start with a hello")
        if message.counter <= self.cursor.counter:
            return Step(skipped="duplicate")  # replayed past our cursor: already recorded
        return Step(event=message, lost=self._skip_to(message.counter - 1))

    def commit(self, counter: int) -> str:
        """Mark events up to `counter` recorded (or deliberately dropped); returns the Ack frame."""
        if self.cursor is None or counter <= self.cursor.counter:
            raise ValueError(f"commit({counter}) does not advance the cursor {self.cursor}")
        self.cursor = replace(self.cursor, counter=counter)
        return Ack(counter=counter).model_dump_json()

    def _greet(self, hello: Hello) -> Step:
        if hello.mirror_id != self.mirror_id:
            raise MirrorProtocolError(
                f"expected mirror {self.mirror_id!r}, got {hello.mirror_id!r}"
            )
        self.greeted = True
        if self.cursor is None or self.cursor.epoch != hello.epoch:
            # First contact, or the mirror restarted its numbering: all it still holds is new.
            self.cursor = Cursor(self.mirror_id, hello.epoch, hello.oldest - 1)
            return Step(hello=hello)
        if hello.latest < self.cursor.counter:
            # Numbering went back without a new epoch (restored backup?): follow the mirror.
            self.cursor = replace(self.cursor, counter=hello.latest)
            return Step(hello=hello, skipped="rewound")
        return Step(hello=hello, lost=self._skip_to(hello.oldest - 1))

    def _reject(self, frame: str, exc: ValidationError) -> Step:
        kinds = {error["type"] for error in exc.errors()}
        if "json_invalid" in kinds:
            return Step(skipped="malformed")
        reason = "unknown_type" if kinds & _UNKNOWN_TAG else "invalid"
        counter = _counter_of(frame)
        if not self.greeted or self.cursor is None or counter is None:
            return Step(skipped=reason)  # unnumbered: a later counter shows it as a gap
        if counter <= self.cursor.counter:
            return Step(skipped="duplicate")
        # Numbered but unusable: step over it so a replay does not trip on it again.
        lost = self._skip_to(counter - 1)
        self.commit(counter)
        return Step(skipped=reason, lost=lost)

    def _skip_to(self, counter: int) -> int:
        """Advance the cursor over counters that will never arrive; returns how many."""
        assert self.cursor is not None
        missing = counter - self.cursor.counter
        if missing <= 0:
            return 0
        self.cursor = replace(self.cursor, counter=counter)
        return missing


def _counter_of(frame: str) -> int | None:
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    counter = data.get("counter") if isinstance(data, dict) else None
    if isinstance(counter, int) and not isinstance(counter, bool) and counter >= 1:
        return counter
    return None
