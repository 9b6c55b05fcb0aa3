"""The OpenAPI 3.1 description of the cloud's HTTP API, served at GET /openapi.json.

Bodies the service validates with pydantic take their JSON Schema from those same models, so
the description cannot drift from what is enforced; the rest is written out here. A test
holds every route of the router (the console's HTML pages aside) to an operation here and
runs schemathesis against it.
"""

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cloud.batch import MAX_INT64
from cloud.coupon_models import CampaignCreate, IssueRequest
from cloud.responses import json_response
from cloud.views import config as config_views
from cloud.views.admin import (
    ID_PATTERN,
    KNOWN_KINDS,
    MAX_CURSOR,
    MAX_LIMIT,
    MAX_SILENT_S,
    EnrollCodeRequest,
)
from cloud.views.config import ConfigWrite
from protocol.constants import MAX_BATCH_EVENTS
from protocol.coupon_events import BusinessConfig, ReserveRequest, ReserveResponse
from protocol.settings import SettingsDocument
from protocol.wire import (
    AgentSelf,
    BatchResponse,
    EnrollRequest,
    EnrollResponse,
    EventBatch,
    Heartbeat,
    HeartbeatResponse,
)

TITLE = "storeedge cloud"
DESCRIPTION = (
    "Ingest, fleet, coupon and remote-config API of the storeedge cloud (docs/SYNC.md,"
    " COUPONS.md, CONFIG.md). The console's HTML pages under /console are not part of it."
)
_MODELS: list[type[BaseModel]] = [
    AgentSelf,
    BatchResponse,
    BusinessConfig,
    CampaignCreate,
    ConfigWrite,
    EnrollCodeRequest,
    EnrollRequest,
    EnrollResponse,
    EventBatch,
    Heartbeat,
    HeartbeatResponse,
    IssueRequest,
    ReserveRequest,
    ReserveResponse,
    SettingsDocument,
]
_REF = "#/components/schemas/{model}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_ANY_OBJECT = {"type": "object"}
_ID = {"type": "string", "pattern": ID_PATTERN}
U32 = 2**32 - 1
# What POST /v1/events parses: the batch is refused whole only when it is not a list of 1 to
# MAX_BATCH_EVENTS values; each is then judged alone (`rejected` with a reason when
# it is not an Event), so any JSON value is a valid item of the request.
_INGEST_BATCH = "IngestBatch"
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}}}
# A config write's document is an RFC 7396 merge patch (null removes a key) checked as a
# SettingsDocument once merged: over the fleet's for a store, and every store's over a new
# fleet document (cloud/settings.py); the schema shows the shape it must merge to.
_DOCUMENT_NOTE = "merge patch (RFC 7396) that must merge into a valid SettingsDocument"
_PROMETHEUS = "text/plain"  # the text exposition format; prometheus_client adds its version


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "malformed request",
        401: "missing, unknown or revoked bearer token",
        403: "refused",
        404: "no such resource",
        408: "the client sent its request too slowly",
        409: "conflict",
        413: "body past the size limit (compressed or inflated)",
        415: "unsupported Content-Encoding",
        429: "this agent is over its rate: retry after the header",
    }
    out: dict[str, Any] = {str(s): _json(_ERROR, words[s]) for s in statuses}
    if 429 in statuses:
        out["429"]["headers"] = _RETRY_AFTER
    # Every route may shed load or lose its database for a moment: retry after the header.
    out["503"] = {**_json(_ERROR, "overloaded or storage unavailable"), "headers": _RETRY_AFTER}
    return out


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    auth: str | None,
    body: type[BaseModel] | str | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    op["security"] = [{auth: []}] if auth else []
    if body is not None:
        schema = {"$ref": _REF.format(model=body)} if isinstance(body, str) else _ref(body)
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _paths() -> dict[str, Any]:
    agent, admin = "agentToken", "adminToken"
    campaign = [_path_param("campaign_id", {"type": "integer", "minimum": 1, "maximum": U32})]
    coupon = [_path_param("coupon_id", {"type": "integer", "minimum": 1, "maximum": MAX_INT64})]
    kind = {"type": "string", "enum": sorted(KNOWN_KINDS)}
    limit = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
    cursor = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    return {
        "/v1/enroll": {"post": _op(
            "Trade a single-use enrollment code for agent credentials",
            {"200": _json(_ref(EnrollResponse), "credentials"), **_errors(400, 403, 408, 413)},
            auth=None, body=EnrollRequest,
        )},
        "/v1/events": {"post": _op(
            "Ingest a batch (optionally gzip): one verdict per event, in batch order",
            {"200": _json(_ref(BatchResponse), "one result per event"),
             **_errors(400, 401, 408, 413, 415, 429)},
            auth=agent, body=_INGEST_BATCH,
        )},
        "/v1/heartbeat": {"post": _op(
            "The agent's health report; answered with the cloud's clock",
            {"200": _json(_ref(HeartbeatResponse), "recorded"),
             **_errors(400, 401, 408, 413, 429)},
            auth=agent, body=Heartbeat,
        )},
        "/v1/agent": {"get": _op(
            "Who the token belongs to, and the cloud's clock",
            {"200": _json(_ref(AgentSelf), "the agent"), **_errors(401)},
            auth=agent,
        )},
        "/v1/token/rotate": {"post": _op(
            "A new token; the old one works until the new one is first used",
            {"200": _json(_ref(EnrollResponse), "new credentials"), **_errors(401)},
            auth=agent,
        )},
        "/v1/config": {"get": _op(
            "The store's business config (coupon keys and policies), with an ETag",
            {"200": _json(_ref(BusinessConfig), "config"),
             "304": {"description": "unchanged since If-None-Match"}, **_errors(401)},
            auth=agent,
            params=[{"name": "If-None-Match", "in": "header", "required": False,
                     "schema": {"type": "string"}}],
        )},
        "/v1/coupons/reserve": {"post": _op(
            "Reserve a single-use coupon fleet-wide",
            {"200": _json(_ref(ReserveResponse), "reserved or not required"),
             "409": _json(_ref(ReserveResponse), "already redeemed elsewhere"),
             **_errors(400, 401, 404, 408, 413)},
            auth=agent, body=ReserveRequest,
        )},
        "/api/stores": {"get": _op(
            "Fleet summary, one row per store, paged by store id",
            {"200": _json(_obj("stores", "next_after"), "a page"), **_errors(400, 401)},
            auth=admin,
            params=[_query("after", _ID), _query("prefix", _ID),
                    _query("silent_for_s", {"type": "integer", "minimum": 0,
                                            "maximum": MAX_SILENT_S}),
                    _query("limit", limit)],
        )},
        "/api/enroll-codes": {"post": _op(
            "A single-use enrollment code for a store, created if new",
            {"200": _json(_obj("code", "store_id", "expires_at", "store_created"), "the code"),
             **_errors(400, 401, 408, 413)},
            auth=admin, body=EnrollCodeRequest,
        )},
        "/api/stores/{store_id}": {"get": _op(
            "One store with each agent's latest heartbeat and its config status",
            {"200": _json(_obj("store", "agents", "config"), "the store"),
             **_errors(400, 401, 404)},
            auth=admin, params=[_path_param("store_id", _ID)],
        )},
        "/api/events": {"get": _op(
            "Stored events, oldest first, paged by cursor",
            {"200": _json(_obj("events", "next_after"), "a page"), **_errors(400, 401)},
            auth=admin,
            params=[_query("store_id", _ID), _query("kind", kind),
                    _query("since", {"type": "string", "format": "date-time"}),
                    _query("after", cursor),
                    _query("limit", limit)],
        )},
        "/api/events/count": {"get": _op(
            "How many events match",
            {"200": _json(_obj("count"), "the count"), **_errors(400, 401)},
            auth=admin, params=[_query("store_id", _ID), _query("kind", kind)],
        )},
        "/api/agents/{agent_id}/revoke": {"post": _op(
            "Revoke an agent's token at once",
            {"200": _json(_obj("agent_id", "revoked"), "done"), **_errors(400, 401)},
            auth=admin, params=[_path_param("agent_id", _ID)],
        )},
        "/api/campaigns": {
            "get": _op("Every campaign", {"200": _json(_obj("campaigns"), "campaigns"),
                                          **_errors(401)}, auth=admin),
            "post": _op("Create a campaign and its first signing key (valid_to after valid_from)",
                        {"201": _json(_ANY_OBJECT, "the campaign"),
                         **_errors(400, 401, 408, 413)}, auth=admin, body=CampaignCreate),
        },
        "/api/campaigns/{campaign_id}": {"get": _op(
            "One campaign with its public keys",
            {"200": _json(_ANY_OBJECT, "the campaign"), **_errors(400, 401, 404)},
            auth=admin, params=campaign,
        )},
        "/api/campaigns/{campaign_id}/keys": {"post": _op(
            "Rotate the campaign's signing key",
            {"201": _json(_ANY_OBJECT, "the new key"), **_errors(400, 401, 404)},
            auth=admin, params=campaign,
        )},
        "/api/campaigns/{campaign_id}/coupons": {"post": _op(
            "Issue signed coupons (validity within the campaign's, valid_to after valid_from)",
            {"201": _json(_obj("campaign_id", "coupons"), "coupons"),
             **_errors(400, 401, 404, 408, 413)},
            auth=admin, body=IssueRequest, params=campaign,
        )},
        "/api/campaigns/{campaign_id}/stats": {"get": _op(
            "Redemption totals, per store",
            {"200": _json(_ANY_OBJECT, "stats"), **_errors(400, 401, 404)},
            auth=admin, params=campaign,
        )},
        "/api/coupons/conflicts": {"get": _op(
            "Double redemptions found by reconciliation",
            {"200": _json(_obj("conflicts", "next_after"), "a page"), **_errors(400, 401)},
            auth=admin, params=[_query("campaign_id", {"type": "integer", "minimum": 0,
                                                       "maximum": U32}),
                                _query("after", cursor), _query("limit", limit)],
        )},
        "/api/coupons/{coupon_id}": {"get": _op(
            "One coupon, its token and its holder",
            {"200": _json(_ANY_OBJECT, "the coupon"), **_errors(400, 401, 404)},
            auth=admin, params=coupon,
        )},
        "/api/coupons/{coupon_id}/qr.png": {"get": _op(
            "The coupon's token as a QR code",
            {"200": {"description": "PNG", "content": {"image/png": {}}},
             **_errors(400, 401, 404)},
            auth=admin, params=coupon,
        )},
        **_config_paths(),
        "/metrics": {"get": _op(
            "Prometheus metrics of this replica, and the fleet's gauges",
            {"200": {"description": "Prometheus text format", "content": {_PROMETHEUS: {}}},
             **_errors(401)},
            auth=admin,
        )},
        "/healthz": {"get": _op(
            "Up, and storage answers",
            {"200": _json(_obj("status"), "ok"),
             "503": _json(_obj("status"), "storage unavailable")},
            auth=None,
        )},
        "/openapi.json": {"get": _op(
            "This description", {"200": _json(_ANY_OBJECT, "OpenAPI 3.1")}, auth=None,
        )},
    }  # fmt: skip


def _config_paths() -> dict[str, Any]:
    """The remote-config admin API (cloud/views/config.py)."""
    admin = "adminToken"
    store = [_path_param("store_id", _ID)]
    version = [_path_param("version", {"type": "integer", "minimum": 1, "maximum": MAX_CURSOR})]
    written = _json(_obj("version", "warnings"), "the new version, and device warnings")
    return {
        "/api/config/fleet": {
            "get": _op("The fleet-wide document in force (null before the first write)",
                       {"200": _json(_obj("fleet"), "the version"), **_errors(401)},
                       auth=admin),
            "put": _op("Write a new fleet-wide version; every store override must still merge",
                       {"201": written, **_errors(400, 401, 408, 409, 413)},
                       auth=admin, body=ConfigWrite),
        },
        "/api/stores/{store_id}/config": {
            "get": _op("The store's documents, merged settings and each agent's report",
                       {"200": _json(_obj("store_id", "fleet", "store", "effective",
                                          "settings_version", "config_hash", "agents"),
                                     "the store's config"),
                        **_errors(400, 401, 404)},
                       auth=admin, params=store),
            "put": _op("Write a new version of the store's override, checked over the fleet's",
                       {"201": written, **_errors(400, 401, 404, 408, 409, 413)},
                       auth=admin, body=ConfigWrite, params=store),
        },
        "/api/config/versions": {"get": _op(
            "Config versions, newest first: the fleet's, or those that shaped one store",
            {"200": _json(_obj("versions", "next_before"), "a page"), **_errors(400, 401)},
            auth=admin,
            params=[_query("store_id", _ID),
                    _query("fleet", {"type": "string", "enum": ["0", "1"]}),
                    _query("before", {"type": "integer", "minimum": 1, "maximum": MAX_CURSOR}),
                    _query("limit", {"type": "integer", "minimum": 1,
                                     "maximum": config_views.MAX_LIMIT})],
        )},
        "/api/config/versions/{version}": {"get": _op(
            "One version with its document",
            {"200": _json(_obj("version", "scope", "store_id", "document", "author", "comment",
                               "created_at"), "the version"),
             **_errors(400, 401, 404)},
            auth=admin, params=version,
        )},
    }  # fmt: skip


def _bound_integers(node: Any) -> None:
    """Every integer on the wire is 64-bit signed (storage columns); say so where unbounded."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("maximum", MAX_INT64)
            node.setdefault("minimum", -MAX_INT64 - 1)
        for value in node.values():
            _bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            _bound_integers(value)


def _close_dict_keys(node: Any) -> None:
    """A `dict[Id, X]` refuses other keys: say so, where pydantic's schema leaves them open.

    pydantic states the key pattern as patternProperties, which leaves keys that do not match
    it free to hold anything; the model refuses them. propertyNames says what it enforces.
    """
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
            [(pattern, value)] = patterns.items()
            del node["patternProperties"]
            node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
            node["additionalProperties"] = value
        for child in node.values():
            _close_dict_keys(child)
    elif isinstance(node, list):
        for child in node:
            _close_dict_keys(child)


def _obj(*required: str) -> dict[str, Any]:
    return {"type": "object", "required": list(required)}


@cache
def openapi() -> dict[str, Any]:
    """The whole description as a JSON-ready dict (built once)."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    schemas = defs.get("$defs", {})
    schemas["Event"] = schemas["EventBatch"]["properties"]["events"]["items"]
    schemas["ConfigWrite"]["properties"]["document"] = {
        "$ref": _REF.format(model="SettingsDocument"),
        "description": _DOCUMENT_NOTE,
    }
    schemas[_INGEST_BATCH] = {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_EVENTS,
                "items": {"anyOf": [{"$ref": _REF.format(model="Event")}, {}]},
            }
        },
    }
    # ScanRules compiles each (as the agent will use it): one that does not is a 400.
    patterns = schemas["ScanRules"]["properties"]["staff_badge_patterns"]["items"]
    patterns["format"] = "regex"
    _bound_integers(schemas)
    _close_dict_keys(schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "1", "description": DESCRIPTION},
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "agentToken": {"type": "http", "scheme": "bearer", "description": "/v1/enroll"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "admin token"},
            },
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    """200 the OpenAPI description of this service."""
    return json_response(openapi())
