"""The HTTP boundary: every failure becomes `{"error": …}` and a count; every answer a metric."""

import asyncio
import logging
import math
import random
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from cloud.errors import Overloaded, RateLimited, RequestError, StorageError
from cloud.keys import COUNTERS, METRICS
from cloud.responses import error_response

log = logging.getLogger(__name__)
# Status recorded for a request whose client went away before the answer (nginx's 499).
CLIENT_CLOSED = "499"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the answer by route name and status, and time it (outside error translation)."""
    metrics = request.app[METRICS]
    # Route names, never raw paths: the label set stays bounded whatever clients request.
    route = request.match_info.route.name or "unmatched"
    started = time.perf_counter()
    status = "500"
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        metrics.requests.labels(route, status).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render known errors as JSON with their status; anything else as an opaque 500."""
    counters = request.app[COUNTERS]
    try:
        return await handler(request)
    except RequestError as exc:
        counters.bad_requests[exc.key] += 1
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.reason, headers)
    except web.HTTPException as exc:
        # aiohttp's own: unknown route, wrong method, body over client_max_size…
        if exc.status >= 400:
            counters.bad_requests[f"http_{exc.status}"] += 1
            return error_response(exc.status, exc.reason, _passthrough_headers(exc))
        raise
    except RateLimited as exc:
        request.app[METRICS].shed.labels(exc.reason).inc()
        # Retry-After is whole seconds (RFC 9110 §10.2.3); rounding down would invite a
        # retry that is refused again.
        wait = str(max(1, math.ceil(exc.retry_after)))
        return error_response(429, str(exc), {"Retry-After": wait})
    except Overloaded as exc:
        counters.errors["overloaded"] += 1
        request.app[METRICS].shed.labels("busy").inc()
        wait = str(random.randint(1, exc.retry_after))
        return error_response(503, str(exc), {"Retry-After": wait})
    except StorageError as exc:
        counters.errors["storage"] += 1
        log.exception("storage failed on %s %s", request.method, request.path)
        # DESIGN.md "Ingest API": 503 with Retry-After, so agents back off and resend.
        return error_response(503, "storage unavailable", {"Retry-After": str(exc.retry_after)})
    except ConnectionResetError:
        # The client went away mid-request (gave up waiting, or its link dropped): nothing
        # to answer and nothing wrong on our side, so a count and no traceback.
        counters.bad_requests["client_gone"] += 1
        return error_response(400, "connection lost")
    except Exception:
        # Never leak internals: the traceback goes to the log, the client gets a fixed text.
        counters.errors["internal"] += 1
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal server error")


def _passthrough_headers(exc: web.HTTPException) -> dict[str, str]:
    # Allow (405) must survive the rewrite; the text/plain Content-Type must not.
    return {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
