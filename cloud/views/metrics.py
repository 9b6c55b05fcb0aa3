"""GET /metrics: Prometheus text format, behind the admin token like the rest of /api."""

from datetime import UTC, datetime, timedelta

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.keys import METRICS, STORAGE
from cloud.views.admin import admin_only

# An agent is online while its latest heartbeat is younger than three 30 s intervals:
# one lost heartbeat is noise, three in a row is an outage (agent.sync.heartbeat).
ONLINE_WINDOW = timedelta(seconds=90)


@admin_only
async def get_metrics(request: web.Request) -> web.Response:
    """200 with every metric; the fleet gauges are read from the database first."""
    metrics = request.app[METRICS]
    storage = request.app[STORAGE]
    stats = await storage.fleet_stats(datetime.now(UTC) - ONLINE_WINDOW)
    metrics.stores.set(stats.stores)
    metrics.agents.set(stats.agents)
    metrics.agents_online.set(stats.agents_online)
    usage = storage.pool_usage()
    metrics.db_connections.labels("busy").set(usage.busy)
    metrics.db_connections.labels("idle").set(usage.size - usage.busy)
    metrics.db_waiting.set(usage.waiting)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
