"""URL table of the cloud service."""

from aiohttp import web

from cloud.openapi import get_openapi
from cloud.views import (
    admin,
    agent_self,
    config,
    coupon_agent,
    coupons,
    enroll,
    health,
    heartbeat,
    ingest,
    metrics,
)


def setup_routes(app: web.Application) -> None:
    """Register every route of the ingest, admin and health APIs on `app`."""
    app.router.add_post("/v1/enroll", enroll.post_enroll, name="enroll")
    app.router.add_post("/v1/events", ingest.post_events, name="events")
    app.router.add_post("/v1/heartbeat", heartbeat.post_heartbeat, name="heartbeat")
    app.router.add_get("/v1/agent", agent_self.get_agent, name="agent_self")
    app.router.add_post("/v1/token/rotate", agent_self.post_rotate, name="token_rotate")
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
    app.router.add_get("/openapi.json", get_openapi, name="openapi")
    setup_coupon_routes(app)
    setup_config_routes(app)


def setup_coupon_routes(app: web.Application) -> None:
    """The coupon API: config and reservation for agents, campaigns and stats for admins."""
    app.router.add_get("/v1/config", coupon_agent.get_config, name="config")
    app.router.add_post("/v1/coupons/reserve", coupon_agent.post_reserve, name="reserve")
    app.router.add_post("/api/campaigns", coupons.post_campaign, name="campaigns_create")
    app.router.add_get("/api/campaigns", coupons.get_campaigns, name="campaigns")
    campaign = "/api/campaigns/{campaign_id:[0-9]+}"
    app.router.add_get(campaign, coupons.get_campaign, name="campaign")
    app.router.add_post(campaign + "/keys", coupons.post_rotate_key, name="campaign_rotate_key")
    app.router.add_post(campaign + "/coupons", coupons.post_coupons, name="campaign_issue")
    app.router.add_get(campaign + "/stats", coupons.get_stats, name="campaign_stats")
    app.router.add_get("/api/coupons/conflicts", coupons.get_conflicts, name="coupon_conflicts")
    coupon = "/api/coupons/{coupon_id:[0-9]+}"
    app.router.add_get(coupon, coupons.get_coupon, name="coupon")
    app.router.add_get(coupon + "/qr.png", coupons.get_coupon_qr, name="coupon_qr")


def setup_config_routes(app: web.Application) -> None:
    """The remote-config admin API (agents fetch theirs with GET /v1/config)."""
    app.router.add_get("/api/config/fleet", config.get_fleet_config, name="config_fleet")
    app.router.add_put("/api/config/fleet", config.put_fleet_config, name="config_fleet_set")
    store = "/api/stores/{store_id}/config"
    app.router.add_get(store, config.get_store_config, name="config_store")
    app.router.add_put(store, config.put_store_config, name="config_store_set")
    app.router.add_get("/api/config/versions", config.get_versions, name="config_versions")
    app.router.add_get(
        "/api/config/versions/{version:[0-9]+}", config.get_version, name="config_version"
    )
