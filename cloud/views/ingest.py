"""POST /v1/events: a batch in, one verdict per event out (DESIGN.md "Ingest API")."""

from datetime import UTC, datetime

from aiohttp import web

from cloud.batch import check_events, decode_body, parse_batch
from cloud.keys import AGENT_AUTH, CONFIG, COUNTERS, COUPON_STORAGE, INGEST_GATE, STORAGE
from cloud.reconcile import reconcile_rows
from cloud.responses import json_response
from cloud.views._body import read_raw


async def post_events(request: web.Request) -> web.Response:
    """200 `{"results": [...]}` in batch order; 4xx for the batch as a whole; 503 to retry."""
    app = request.app
    with app[INGEST_GATE].admit():
        agent = await app[AGENT_AUTH].async_authenticate(request)
        raw = await read_raw(request)
        body = decode_body(raw, request.headers.get("Content-Encoding"), app[CONFIG].max_body_bytes)
        checked = check_events(parse_batch(body), agent)
        # The whole batch goes to storage in one call: one thread hop, one transaction.
        now = datetime.now(UTC)
        stored = await app[STORAGE].ingest(agent, checked.rows, now)
        # Before answering: a failure here is a 503, so the agent resends and the coupon
        # tables catch up from the (then duplicate) events. Idempotent, so never twice.
        await reconcile_rows(app[COUPON_STORAGE], agent, checked.rows, now)
    results = checked.complete(stored)
    counters = app[COUNTERS].events
    accepted = sum(stored)
    counters["accepted"] += accepted
    counters["duplicate"] += len(stored) - accepted
    for key, count in checked.rejected.items():
        counters[f"rejected_{key}"] += count
    return json_response({"results": results})
