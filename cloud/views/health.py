"""GET /healthz: the service is up and its storage answers."""

from aiohttp import web

from cloud.errors import StorageError
from cloud.keys import COUNTERS, STORAGE
from cloud.responses import json_response


async def get_healthz(request: web.Request) -> web.Response:
    """200 `{"status": "ok"}` after a storage ping; 503 when storage fails."""
    try:
        await request.app[STORAGE].ping()
    except StorageError:
        request.app[COUNTERS].errors["health_storage"] += 1
        return json_response({"status": "unavailable", "error": "storage unavailable"}, 503)
    return json_response({"status": "ok"})
