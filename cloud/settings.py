"""Remote business settings: a fleet document plus store overrides, merged, checked, versioned.

The effective settings of a store are `merge_patch(fleet, store)` (RFC 7396: objects merge
key by key, `null` removes a key, anything else replaces), validated as a
`SettingsDocument`. Every write is checked before it is stored, against what it will be
merged with, so a refused document never reaches a store (docs/CONFIG.md "Remote config").
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cloud.errors import BadRequest
from cloud.storage.base import StoreDetail
from cloud.storage.settings import ConfigStorage, ConfigVersion
from protocol.settings import ScanRules, SettingsDocument

# A document's JSON is small by design (protocol.settings bounds every list); this bounds
# what a store's config poll costs, whatever an admin pastes.
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_LISTED = 5  # stores named in one refusal


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    """What one store is to run: the merged document and the version numbering it."""

    version: int  # max(fleet version, store version); 0 when neither was ever written
    settings: SettingsDocument
    fleet: ConfigVersion | None
    store: ConfigVersion | None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2 MergePatch(target, patch), without modifying either argument."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def check_document(document: Any, base: dict[str, Any] | None = None) -> SettingsDocument:
    """The settings `document` yields merged onto `base`; BadRequest naming the bad field."""
    if not isinstance(document, dict):
        raise BadRequest("document: must be a JSON object", key="bad_config")
    try:
        return SettingsDocument.model_validate(merge_patch(base or {}, document))
    except ValidationError as exc:
        raise BadRequest(f"document: {_describe(exc)}", key="bad_config") from exc


async def effective_settings(config: ConfigStorage, store_id: str) -> EffectiveSettings:
    """The store's merged settings as of now (defaults when nothing was ever written)."""
    fleet, store = await config.current_config(store_id)
    merged = merge_patch(merge_patch({}, fleet.document if fleet else {}),
                         store.document if store else {})  # fmt: skip
    version = max(fleet.version if fleet else 0, store.version if store else 0)
    # Both documents were checked when written, merged with what they meet here; a failure
    # now is a bug, and surfaces as a 500 rather than as a config served half-checked.
    return EffectiveSettings(version, SettingsDocument.model_validate(merged), fleet, store)


async def set_fleet_config(
    config: ConfigStorage,
    document: Any,
    author: str,
    comment: str = "",
    if_version: int | None = None,
    now: datetime | None = None,
) -> ConfigVersion:
    """Store a new fleet-wide version after checking it, and every store override over it."""
    check_document(document)
    fleet = merge_patch({}, document)
    broken = []
    for override in await config.latest_store_configs():
        try:
            check_document(override.document, fleet)
        except BadRequest as exc:
            broken.append(f"store {override.store_id}: {exc.reason}")
    if broken:
        more = f" (and {len(broken) - MAX_LISTED} more)" if len(broken) > MAX_LISTED else ""
        raise BadRequest("with this fleet document, store overrides would not validate: "
                         + "; ".join(broken[:MAX_LISTED]) + more, key="bad_config")  # fmt: skip
    return await config.add_config_version(None, document, author, comment,
                                           now or datetime.now(UTC), if_version)  # fmt: skip


async def set_store_config(
    config: ConfigStorage,
    store_id: str,
    document: Any,
    author: str,
    comment: str = "",
    if_version: int | None = None,
    now: datetime | None = None,
) -> ConfigVersion:
    """Store a new version of a store's override, checked alone and over the fleet's."""
    check_document(document)
    fleet = await config.latest_fleet_config()
    check_document(document, merge_patch({}, fleet.document if fleet else {}))
    return await config.add_config_version(store_id, document, author, comment,
                                           now or datetime.now(UTC), if_version)  # fmt: skip


def _describe(exc: ValidationError) -> str:
    """The first bad field and why, e.g. `receipt.colour: Extra inputs are not permitted`."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    path = ".".join(str(part) for part in first["loc"]) or "document"
    extra = exc.error_count() - 1
    return f"{path}: {first['msg']}" + (f" (and {extra} more)" if extra else "")


def device_warnings(settings: SettingsDocument, store: StoreDetail | None) -> list[str]:
    """Device sections no agent of the store reported a matching device for, in words.

    Advice, not refusal: the agent decides what its box has (agent.toml), and refuses a
    config naming a device it lacks; this tells the admin before the store does.
    """
    if store is None:
        return []
    seen: dict[str, str] = {}
    for agent in store.agents:
        body = agent.heartbeat.body if agent.heartbeat else {}
        for device in body.get("devices", []):
            seen[str(device.get("device_id"))] = str(device.get("kind"))
    if not seen:
        return []  # nothing reported yet: nothing to compare with
    warnings = []
    for device_id, section in settings.devices.items():
        kind = seen.get(device_id)
        store_id = store.summary.store_id
        if kind is None:
            warnings.append(f"devices.{device_id}: no agent of store {store_id} reported such"
                            " a device; its agent will refuse this config")  # fmt: skip
        elif section.scan != ScanRules() and kind != "scanner":
            warnings.append(f"devices.{device_id}: scan rules need a scanner, it is a {kind};"
                            " its agent will refuse this config")  # fmt: skip
    return warnings
