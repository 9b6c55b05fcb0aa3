"""Sans-IO ingest: body bytes → batch → per-event verdicts and rows to store.

No aiohttp and no storage here, so the hot path is testable and measurable on its own.
"""

import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec
import orjson
from pydantic import TypeAdapter, ValidationError

from cloud.errors import BadRequest, PayloadTooLarge, UnsupportedEncoding
from cloud.storage.base import AgentIdentity, EventRow
from protocol.constants import MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from protocol.events import EVENT_ADAPTER, Event

MISMATCH_REASON = "agent_id/store_id do not match credentials"
MAX_INT64 = 2**63 - 1  # SQLite INTEGER, PostgreSQL bigint
# Longest reason echoed per event: enough for "payload.text: String should have at most…".
MAX_REASON_LEN = 200
# A rejected event's id is echoed only if it looks like an id, never arbitrary client text.
_MAX_ECHO_ID_LEN = 64
# gzip member framing for zlib: 16 + 15-bit window (zlib manual, inflateInit2).
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The JSON bytes of a request body, gunzipped if needed, never longer than `limit`.

    Inflation stops one byte past the limit, so a gzip bomb costs at most `limit` bytes of
    memory before it is answered 413.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(raw) > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes", key="body_too_large")
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedEncoding(
            f"unsupported Content-Encoding {encoding[:32]!r}: use gzip or none",
            key="unsupported_encoding",
        )
    inflater = zlib.decompressobj(_GZIP_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}", key="bad_gzip") from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes", key="body_too_large")
    if not inflater.eof:
        raise BadRequest("body is truncated gzip", key="bad_gzip")
    if inflater.unused_data:
        raise BadRequest("body has data after the gzip stream", key="bad_gzip")
    return body


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[msgspec.Raw]


# msgspec splits the body into each event's raw JSON without building a Python object for
# it: the bytes are validated once, by pydantic-core, and stored as the agent sent them.
_BATCH_DECODER = msgspec.json.Decoder(_Batch)
_EVENTS_ADAPTER: TypeAdapter[list[Any]] = TypeAdapter(list[Event])


def parse_batch(body: bytes) -> list[bytes]:
    """Each event's JSON bytes of a `{"events": [...]}` body, or BadRequest naming the fault."""
    try:
        events = _BATCH_DECODER.decode(body).events
    except msgspec.DecodeError:
        _refuse_body(body)  # the slow path, only for bad bodies, words the reason
    if not events:
        raise BadRequest("batch is empty", key="empty_batch")
    if len(events) > MAX_BATCH_EVENTS:
        raise BadRequest(
            f"batch has {len(events)} events, more than {MAX_BATCH_EVENTS}", key="batch_too_long"
        )
    return [bytes(raw) for raw in events]


def _refuse_body(body: bytes) -> NoReturn:
    """Raise the BadRequest for a body that is not a well-formed batch."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", key="not_json") from exc
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise BadRequest('body must be a JSON object {"events": [...]}', key="not_batch")
    if len(data) != 1:
        raise BadRequest('body must have only the key "events"', key="not_batch")
    # orjson and msgspec disagree on this body (e.g. an integer past 64 bits): refuse it whole.
    raise BadRequest("body is not valid JSON", key="not_json")


@dataclass(slots=True)
class CheckedBatch:
    """Per-event results in batch order; `None` marks a slot filled by the storage outcome."""

    results: list[dict[str, Any] | None]
    rows: list[EventRow]
    row_slots: list[int]
    rejected: dict[str, int]

    def complete(self, stored: Sequence[bool]) -> list[dict[str, Any]]:
        """Fill the storage slots with accepted/duplicate and return all results."""
        for slot, row, ok in zip(self.row_slots, self.rows, stored, strict=True):
            status = "accepted" if ok else "duplicate"
            self.results[slot] = {"status": status, "event_id": row.event_id, "reason": None}
        return [result for result in self.results if result is not None]


def check_events(events: Sequence[Any], agent: AgentIdentity) -> CheckedBatch:
    """Validate each event on its own; valid ones of this agent become rows to store.

    `events` are raw JSON bytes (from `parse_batch`) or already-parsed values.
    """
    raws = [item if isinstance(item, bytes) else orjson.dumps(item) for item in events]
    checked = CheckedBatch([], [], [], {})
    models: list[Any] | None = None
    # One call for the whole batch (the common case: every event valid) spares a call per
    # event; any failure falls back to per-event verdicts, worded the same way, below.
    with contextlib.suppress(ValidationError):
        models = _EVENTS_ADAPTER.validate_json(b"[" + b",".join(raws) + b"]")
    for index, raw in enumerate(raws):
        verdict = _check(raw, agent, None if models is None else models[index])
        if isinstance(verdict, EventRow):
            checked.row_slots.append(len(checked.results))
            checked.rows.append(verdict)
            checked.results.append(None)
        else:
            key, reason = verdict
            checked.rejected[key] = checked.rejected.get(key, 0) + 1
            checked.results.append(_rejected(raw, reason))
    return checked


def _check(body: bytes, agent: AgentIdentity, event: Any) -> EventRow | tuple[str, str]:
    if body[:1] != b"{":  # msgspec's raw values start at their first byte, never a space
        return "not_object", "event must be a JSON object"
    if len(body) > MAX_EVENT_BYTES:
        return "too_large", f"event is {len(body)} bytes, more than {MAX_EVENT_BYTES}"
    if event is None:
        try:
            event = EVENT_ADAPTER.validate_json(body)
        except ValidationError as exc:
            return "invalid", describe(exc)
    if event.agent_id != agent.agent_id or event.store_id != agent.store_id:
        return "mismatch", MISMATCH_REASON
    if event.seq > MAX_INT64:
        # The protocol leaves seq unbounded; storage columns are 64-bit signed.
        return "invalid", f"seq: must be at most {MAX_INT64}"
    return EventRow(
        event_id=str(event.event_id),
        seq=event.seq,
        device_id=event.device_id,
        kind=event.kind,
        occurred_at=event.occurred_at,
        body=body,
    )


def describe(exc: ValidationError) -> str:
    """A short reason naming the first bad field, e.g. `payload.text: Field required`."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    loc = first["loc"]
    if first["type"] == "union_tag_not_found":
        reason = "kind: missing"
    elif first["type"] == "union_tag_invalid":
        reason = "kind: unknown event kind"
    else:
        # The discriminated union prefixes the location with the kind tag; drop it.
        path = ".".join(str(part) for part in loc[1:]) or "event"
        reason = f"{path}: {first['msg']}"
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more)"
    return reason[:MAX_REASON_LEN]


def _rejected(body: bytes, reason: str) -> dict[str, Any]:
    try:
        item = orjson.loads(body)
    except orjson.JSONDecodeError:  # e.g. an integer past 64 bits: no id to echo
        item = None
    event_id = item.get("event_id") if isinstance(item, dict) else None
    if not isinstance(event_id, str) or len(event_id) > _MAX_ECHO_ID_LEN:
        event_id = None
    return {"status": "rejected", "event_id": event_id, "reason": reason}
