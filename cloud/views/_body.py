"""Reading request bodies within the configured limit."""

from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud.batch import decode_body
from cloud.errors import BadRequest, PayloadTooLarge
from cloud.keys import CONFIG
from cloud.slowclient import read_body

M = TypeVar("M", bound=BaseModel)


async def read_raw(request: web.Request) -> bytes:
    """The body as received (possibly compressed), or PayloadTooLarge past the limit."""
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refuse before reading a byte of it.
        raise PayloadTooLarge(f"body exceeds {limit} bytes", key="body_too_large")
    try:
        return await read_body(request)  # stops at Application(client_max_size=limit)
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body exceeds {limit} bytes", key="body_too_large") from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as `model`, or BadRequest naming the bad field."""
    raw = await read_raw(request)
    body = decode_body(
        raw, request.headers.get("Content-Encoding"), request.app[CONFIG].max_body_bytes
    )
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", key="not_json") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe_model(exc), key="invalid_body") from exc


def in_utc(value: datetime, name: str) -> datetime:
    """`value` in UTC, or BadRequest when UTC has no such time (past year 9999 or before 1)."""
    try:
        # e.g. 9999-12-31T23:00-14:00 is valid ISO 8601, but year 10000 in UTC: storage
        # would take it and every later read of it would fail.
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise BadRequest(f"{name}: out of range in UTC", key="invalid_body") from exc


def describe_model(exc: ValidationError) -> str:
    """The first bad field and why, e.g. `agent_info.hostname: String should have…`."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    path = ".".join(str(part) for part in first["loc"]) or "body"
    extra = exc.error_count() - 1
    return f"{path}: {first['msg']}" + (f" (and {extra} more)" if extra else "")
