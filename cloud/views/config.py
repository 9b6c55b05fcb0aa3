"""Remote-config admin API (bearer admin token): fleet and store documents, versions, reports."""

from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import Field

from cloud.config_status import AgentConfigStatus, store_config_status
from cloud.errors import BadRequest, NotFound
from cloud.keys import COUPON_STORAGE, SETTINGS_STORAGE, STORAGE
from cloud.responses import iso, json_response
from cloud.settings import (
    MAX_DOCUMENT_BYTES,
    device_warnings,
    effective_settings,
    set_fleet_config,
    set_store_config,
)
from cloud.storage.settings import ConfigVersion
from cloud.views._body import read_model
from cloud.views.admin import MAX_CURSOR, admin_only
from cloud.views.admin import _id as id_arg
from cloud.views.admin import _int as int_arg
from protocol.base import Frozen

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class ConfigWrite(Frozen):
    """PUT body: the whole document of one scope, who writes it and why.

    `if_version`: the scope's version the writer started from (0: none yet); a write racing
    another one is then refused with 409 instead of silently undoing it.
    """

    document: dict[str, Any]
    author: Annotated[str, Field(min_length=1, max_length=128)]
    comment: Annotated[str, Field(max_length=1024)] = ""
    if_version: int | None = Field(default=None, ge=0, le=MAX_CURSOR)


@admin_only
async def get_fleet_config(request: web.Request) -> web.Response:
    """200 `{"fleet": version | null}`: the fleet-wide document now in force."""
    fleet = await request.app[SETTINGS_STORAGE].latest_fleet_config()
    return json_response({"fleet": version_json(fleet)})


@admin_only
async def put_fleet_config(request: web.Request) -> web.Response:
    """201 `{"version": …}` a new fleet-wide version; 400 with the reason; 409 if_version."""
    body = await _read_write(request)
    version = await set_fleet_config(request.app[SETTINGS_STORAGE], body.document, body.author,
                                     body.comment, body.if_version)  # fmt: skip
    return json_response({"version": version_json(version), "warnings": []}, status=201)


@admin_only
async def get_store_config(request: web.Request) -> web.Response:
    """200 the store's documents, merged settings, desired version and hash, agent reports."""
    store_id = id_arg(request.match_info["store_id"], "store_id")
    if await request.app[STORAGE].get_store(store_id) is None:
        raise NotFound(f"unknown store {store_id!r}", key="unknown_store")
    return json_response(await store_config(request.app, store_id, full=True))


@admin_only
async def put_store_config(request: web.Request) -> web.Response:
    """201 a new version of the store's override (checked over the fleet's); 400, 404, 409."""
    store_id = id_arg(request.match_info["store_id"], "store_id")
    body = await _read_write(request)
    storage = request.app[SETTINGS_STORAGE]
    version = await set_store_config(storage, store_id, body.document, body.author,
                                     body.comment, body.if_version)  # fmt: skip
    effective = await effective_settings(storage, store_id)
    warnings = device_warnings(effective.settings, await request.app[STORAGE].get_store(store_id))
    return json_response({"version": version_json(version), "warnings": warnings}, status=201)


@admin_only
async def get_versions(request: web.Request) -> web.Response:
    """200 `{"versions": [...], "next_before": n | null}`, newest first.

    `?store_id=S` lists the versions that shaped store S (its own and the fleet's);
    add `&fleet=0` for its own only. Without store_id: the fleet's.
    """
    query = request.rel_url.query
    store_id = query.get("store_id")
    if store_id is not None:
        store_id = id_arg(store_id, "store_id")
    include_fleet = query.get("fleet", "1") != "0"
    limit = int_arg(query.get("limit"), "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    before = int_arg(query.get("before"), "before", 1, MAX_CURSOR)
    rows = await request.app[SETTINGS_STORAGE].list_config_versions(
        store_id, include_fleet, before, limit + 1
    )
    page = rows[:limit]
    next_before = page[-1].version if len(rows) > limit else None
    return json_response({"versions": [version_json(v) for v in page], "next_before": next_before})


@admin_only
async def get_version(request: web.Request) -> web.Response:
    """200 one version with its document; 404."""
    number = int_arg(request.match_info["version"], "version", 1, MAX_CURSOR)
    assert number is not None  # the route only matches digits
    version = await request.app[SETTINGS_STORAGE].get_config_version(number)
    if version is None:
        raise NotFound(f"unknown config version {number}", key="unknown_config_version")
    return json_response(version_json(version))


async def store_config(app: web.Application, store_id: str, full: bool = False) -> dict[str, Any]:
    """The console's view of a store's config: desired vs what each agent applied or refused."""
    status = await store_config_status(app[SETTINGS_STORAGE], app[COUPON_STORAGE], store_id)
    view: dict[str, Any] = {
        "settings_version": status.settings_version,
        "config_hash": status.config_hash,
        "agents": [_report(a) for a in status.agents],
    }
    if full:
        effective = status.settings
        view.update(
            store_id=store_id,
            fleet=version_json(effective.fleet),
            store=version_json(effective.store),
            effective=effective.settings.model_dump(mode="json"),
        )
    return view


def version_json(version: ConfigVersion | None) -> dict[str, Any] | None:
    """One version as the API shows it."""
    if version is None:
        return None
    return {
        "version": version.version,
        "scope": "fleet" if version.store_id is None else "store",
        "store_id": version.store_id,
        "document": version.document,
        "author": version.author,
        "comment": version.comment,
        "created_at": iso(version.created_at),
    }


def _report(status: AgentConfigStatus) -> dict[str, Any]:
    refusal = status.last_refusal
    return {
        "agent_id": status.agent_id,
        "changed_at": iso(status.changed_at),
        "applied_version": status.applied_version,
        "applied_hash": status.applied_hash,
        "in_sync": status.in_sync,
        "refusing": status.refusing,
        "last_refusal": refusal.model_dump(mode="json") if refusal is not None else None,
    }


async def _read_write(request: web.Request) -> ConfigWrite:
    body = await read_model(request, ConfigWrite)
    size = len(orjson.dumps(body.document))
    if size > MAX_DOCUMENT_BYTES:
        raise BadRequest(f"document: {size} bytes, at most {MAX_DOCUMENT_BYTES}",
                         key="config_too_large")  # fmt: skip
    return body
