"""URL table of the cloud service."""

from aiohttp import web

from cloud.views import admin, enroll, health, heartbeat, ingest, metrics


def setup_routes(app: web.Application) -> None:
    """Register every route of the ingest, admin and health APIs on `app`."""
    app.router.add_post("/v1/enroll", enroll.post_enroll, name="enroll")
    app.router.add_post("/v1/events", ingest.post_events, name="events")
    app.router.add_post("/v1/heartbeat", heartbeat.post_heartbeat, name="heartbeat")
    app.router.add_get("/api/stores", admin.get_stores, name="stores")
    app.router.add_post("/api/enroll-codes", admin.post_enroll_code, name="enroll_codes")
    app.router.add_get("/api/stores/{store_id}", admin.get_store, name="store")
    app.router.add_get("/api/events", admin.get_events, name="events_list")
    app.router.add_get("/api/events/count", admin.get_events_count, name="events_count")
    app.router.add_post(
        "/api/agents/{agent_id}/revoke", admin.post_revoke_agent, name="revoke_agent"
    )
    app.router.add_get("/healthz", health.get_healthz, name="healthz")
    app.router.add_get("/metrics", metrics.get_metrics, name="metrics")
