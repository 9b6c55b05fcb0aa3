"""POST /v1/events: a batch in, one verdict per event out (DESIGN.md "Ingest API")."""

import time
from datetime import UTC, datetime

from aiohttp import web

from cloud.batch import check_events, decode_body, parse_batch
from cloud.errors import RateLimited
from cloud.keys import (
    AGENT_AUTH,
    CONFIG,
    COUNTERS,
    COUPON_STORAGE,
    INGEST_GATE,
    METRICS,
    STORAGE,
)
from cloud.reconcile import reconcile_rows
from cloud.responses import json_response
from cloud.views._body import read_raw


async def post_events(request: web.Request) -> web.Response:
    """200 `{"results": [...]}` in batch order; 4xx for the batch as a whole; 429/503 to retry."""
    app = request.app
    config = app[CONFIG]
    storage = app[STORAGE]
    metrics = app[METRICS]
    size = request.content_length
    with app[INGEST_GATE].admit(config.max_body_bytes if size is None else size):
        agent = await app[AGENT_AUTH].async_authenticate(request)
        raw = await read_raw(request)
        body = decode_body(raw, request.headers.get("Content-Encoding"), config.max_body_bytes)
        events = parse_batch(body)
        # Charged before validation, the expensive part: a flood is refused for the price of
        # a JSON parse and one row update, on whichever replica it lands.
        wait = await storage.admit(agent.agent_id, len(events), config.agent_rate, _now())
        if wait:
            raise RateLimited(
                f"agent over its limit of {config.agent_events_per_s:g} events/s,"
                f" retry in {wait:.1f} s",
                wait,
            )
        checked = check_events(events, agent)
        started = time.perf_counter()
        # The whole batch goes to storage in one call: one transaction.
        now = _now()
        stored = await storage.ingest(agent, checked.rows, now)
        # Before answering: a failure here is a 503, so the agent resends and the coupon
        # tables catch up from the (then duplicate) events. Idempotent, so never twice.
        await reconcile_rows(app[COUPON_STORAGE], agent, checked.rows, now)
        if checked.rows:
            metrics.storage_seconds.observe(time.perf_counter() - started)
            metrics.batch_events.observe(len(checked.rows))
    results = checked.complete(stored)
    counters = app[COUNTERS].events
    accepted = sum(stored)
    counters["accepted"] += accepted
    counters["duplicate"] += len(stored) - accepted
    for key, count in checked.rejected.items():
        counters[f"rejected_{key}"] += count
    return json_response({"results": results})


def _now() -> datetime:
    return datetime.now(UTC)
