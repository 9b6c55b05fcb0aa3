"""Admin API (bearer admin token): fleet list, store detail, event listing and counts."""

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cloud.auth import require_admin
from cloud.errors import BadRequest, NotFound, UsageError
from cloud.fleet import DEFAULT_CODE_TTL, issue_enroll_code, validate_id
from cloud.keys import AGENT_AUTH, CONFIG, STORAGE
from cloud.responses import iso, json_response
from cloud.storage.base import AgentDetail, EventFilter, StoreFilter, StoreSummary
from cloud.views._body import read_model
from protocol.events import KIND_FOR_PAYLOAD

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Stores per page of GET /api/stores when the caller does not say: a whole small fleet in
# one answer, and a bounded one for 100,000 stores (follow `next_after`).
DEFAULT_STORE_LIMIT = 1000
MAX_SILENT_S = 10 * 365 * 86400  # silent_for_s above ten years is a typo, not a query
MAX_CURSOR = 2**63 - 1  # SQLite INTEGER / PostgreSQL bigint
KNOWN_KINDS = frozenset(KIND_FOR_PAYLOAD.values())
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"  # protocol.base.Id, for schemas

View = Callable[[web.Request], Awaitable[web.Response]]
MAX_CODE_TTL_S = 30 * 86400  # a code meant for a store visit, not a standing credential


class EnrollCodeRequest(BaseModel):
    """POST /api/enroll-codes body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Checked by validate_id, whose message says what an id may hold; the schema states it too.
    store_id: Annotated[str, Field(max_length=64, json_schema_extra={"pattern": ID_PATTERN})]
    ttl_s: Annotated[float, Field(gt=0, le=MAX_CODE_TTL_S)] | None = None


def admin_only(view: View) -> View:
    """Run `view` only for requests bearing the admin token (401 otherwise)."""

    @functools.wraps(view)
    async def guarded(request: web.Request) -> web.Response:
        require_admin(request, request.app[CONFIG].admin_token)
        return await view(request)

    return guarded


@admin_only
async def get_stores(request: web.Request) -> web.Response:
    """200 `{"stores": [...], "next_after": id | None}`: a page of fleet summaries by id.

    `?after=ID` continues a listing, `prefix=` keeps ids starting with it, `silent_for_s=N`
    keeps stores with no heartbeat in the last N seconds, `limit=` (1..1000) sizes the page.
    """
    query = request.rel_url.query
    limit_arg = _int(query.get("limit"), "limit", 1, MAX_LIMIT)
    limit = DEFAULT_STORE_LIMIT if limit_arg is None else limit_arg
    silent_for = _int(query.get("silent_for_s"), "silent_for_s", 0, MAX_SILENT_S)
    store_filter = StoreFilter(
        after=_optional_id(query.get("after"), "after"),
        prefix=_optional_id(query.get("prefix"), "prefix"),
        silent_since=None
        if silent_for is None
        else datetime.now(UTC) - timedelta(seconds=silent_for),
        limit=limit + 1,  # one extra row says whether another page exists
    )
    stores = await request.app[STORAGE].list_stores(store_filter)
    page = stores[:limit]
    next_after = page[-1].store_id if len(stores) > limit else None
    return json_response({"stores": [_summary(store) for store in page], "next_after": next_after})


@admin_only
async def post_enroll_code(request: web.Request) -> web.Response:
    """200 `{code, store_id, expires_at, store_created}`: a single-use code, store made if new.

    The HTTP twin of `storeedge cloud enroll-code`, for scripts and the fleet simulator that
    have the admin token but no database access.
    """
    body = await read_model(request, EnrollCodeRequest)
    ttl = DEFAULT_CODE_TTL if body.ttl_s is None else timedelta(seconds=body.ttl_s)
    try:
        issued = await issue_enroll_code(request.app[STORAGE], body.store_id, ttl)
    except UsageError as exc:
        raise BadRequest(f"store_id: {exc}", key="bad_store_id") from exc
    return json_response(
        {
            "code": issued.code,
            "store_id": issued.store_id,
            "expires_at": iso(issued.expires_at),
            "store_created": issued.store_created,
        }
    )


@admin_only
async def get_store(request: web.Request) -> web.Response:
    """200 `{"store", "agents", "config"}`: agents with their latest heartbeat; 404.

    `config`: the desired settings version and hash, and per agent what it applied and the
    last config it refused, with the reason (cloud/views/config.py).
    """
    store_id = _id(request.match_info["store_id"], "store_id")
    detail = await request.app[STORAGE].get_store(store_id)
    if detail is None:
        raise NotFound(f"unknown store {store_id!r}", key="unknown_store")
    from cloud.views.config import store_config  # imports this module's helpers

    return json_response(
        {
            "store": _summary(detail.summary),
            "agents": [_agent(a) for a in detail.agents],
            "config": await store_config(request.app, store_id),
        }
    )


@admin_only
async def get_events(request: web.Request) -> web.Response:
    """200 `{"events": [{cursor, received_at, event}], "next_after": cursor | None}`."""
    query = request.rel_url.query
    limit_arg = _int(query.get("limit"), "limit", 1, MAX_LIMIT)
    limit = DEFAULT_LIMIT if limit_arg is None else limit_arg
    event_filter = EventFilter(
        store_id=_optional_id(query.get("store_id"), "store_id"),
        kind=_kind(query.get("kind")),
        since=_since(query.get("since")),
        after=_int(query.get("after"), "after", 0, MAX_CURSOR),
        limit=limit + 1,  # one extra row says whether another page exists
    )
    rows = await request.app[STORAGE].list_events(event_filter)
    page = rows[:limit]
    events = [
        # Fragment splices the stored JSON as is: no parse and re-serialize per event.
        {"cursor": r.cursor, "received_at": iso(r.received_at), "event": orjson.Fragment(r.body)}
        for r in page
    ]
    next_after = page[-1].cursor if len(rows) > limit else None
    return json_response({"events": events, "next_after": next_after})


@admin_only
async def get_events_count(request: web.Request) -> web.Response:
    """200 `{"count": n}` for the store/kind filter."""
    query = request.rel_url.query
    store_id = _optional_id(query.get("store_id"), "store_id")
    count = await request.app[STORAGE].count_events(store_id, _kind(query.get("kind")))
    return json_response({"count": count})


@admin_only
async def post_revoke_agent(request: web.Request) -> web.Response:
    """200 `{"revoked": bool}`: the agent's token stops working at once in this process."""
    agent_id = _id(request.match_info["agent_id"], "agent_id")
    revoked = await request.app[STORAGE].revoke_agent(agent_id, datetime.now(UTC))
    request.app[AGENT_AUTH].forget(agent_id)
    return json_response({"agent_id": agent_id, "revoked": revoked})


def _summary(store: StoreSummary) -> dict[str, Any]:
    return {
        "store_id": store.store_id,
        "created_at": iso(store.created_at),
        "agents": store.agents,
        "last_heartbeat_at": iso(store.last_heartbeat_at),
        "backlog_events": store.backlog_events,
        "oldest_unsynced_age_s": store.oldest_unsynced_age_s,
        "events_total": store.events_total,
    }


def _agent(agent: AgentDetail) -> dict[str, Any]:
    heartbeat = agent.heartbeat
    return {
        "agent_id": agent.agent_id,
        "enrolled_at": iso(agent.enrolled_at),
        "revoked_at": iso(agent.revoked_at),
        "agent_info": agent.agent_info,
        "events_total": agent.events_total,
        "last_seq": agent.last_seq,
        "last_event_at": iso(agent.last_event_at),
        "last_heartbeat_at": iso(heartbeat.received_at) if heartbeat else None,
        "heartbeat": heartbeat.body if heartbeat else None,
    }


def _id(value: str, name: str) -> str:
    try:
        return validate_id(value, name)
    except UsageError as exc:
        raise BadRequest(f"{name}: {exc}", key=f"bad_{name}") from exc


def _optional_id(value: str | None, name: str) -> str | None:
    return None if value is None else _id(value, name)


def _kind(value: str | None) -> str | None:
    if value is not None and value not in KNOWN_KINDS:
        known = ", ".join(sorted(KNOWN_KINDS))
        raise BadRequest(f"kind: unknown event kind (known: {known})", key="bad_kind")
    return value


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    if "T" in value and " " in value:
        # An unencoded "+00:00" in a query string arrives as " 00:00"; take what was meant.
        value = value.replace(" ", "+")
    try:
        since = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest("since: not an ISO 8601 date-time", key="bad_since") from exc
    if since.tzinfo is None:
        raise BadRequest("since: needs a timezone, e.g. 2024-05-01T00:00:00Z", key="bad_since")
    try:
        return since.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+14:00, the year 0 in UTC
        raise BadRequest("since: out of range in UTC", key="bad_since") from exc


def _int(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise BadRequest(f"{name}: not an integer", key=f"bad_{name}") from exc
    if not low <= number <= high:
        raise BadRequest(f"{name}: must be {low}..{high}", key=f"bad_{name}")
    return number
