"""What the running agent is doing, as one JSON document: status page, `agent status`, STATUS=."""

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.outbox import oldest_age_s

if TYPE_CHECKING:
    from agent.runtime import AgentRuntime

RECENT_ON_PAGE = 20


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def snapshot(runtime: "AgentRuntime") -> dict[str, Any]:
    """The agent's state now; every field is plain JSON."""
    now = time.time()
    creds = runtime.credentials
    doc: dict[str, Any] = {
        "agent": {
            "agent_id": creds.agent_id,
            "store_id": creds.store_id,
            "cloud_url": creds.cloud_url,
            "version": __version__,
            "started_at": _iso(runtime.started_at),
            "uptime_s": round(now - runtime.started_at, 1) if runtime.started_at else None,
        },
        "devices": [d.model_dump(mode="json") for d in runtime.device_health()],
        "scans": [s.as_json() for s in reversed(runtime.recent.scans)][:RECENT_ON_PAGE],
    }
    if runtime.outbox is not None:
        stats = await runtime.outbox.stats()
        doc["outbox"] = {
            "backlog_events": stats.backlog_events,
            "backlog_bytes": stats.backlog_bytes,
            "oldest_unsynced_age_s": _round(oldest_age_s(stats, now)),
            "dead_letters": stats.dead_letters,
            "losses": stats.losses,
            "over_cap": stats.over_cap,
            "alerts": runtime.outbox.alerts(now),
        }
    drain, beat = runtime.drain, runtime.heartbeat
    if drain is not None:
        c = drain.counters
        doc["sync"] = {
            "state": drain.state.value,
            "last_sync_at": _iso(c.last_sync_at),
            "last_error": c.last_error,
            "accepted": c.accepted,
            "duplicate": c.duplicate,
            "rejected": c.rejected,
            "retries": c.retries,
        }
    refused = [
        t
        for t in (
            getattr(drain, "unauthorized_since", None),
            getattr(beat, "unauthorized_since", None),
        )
        if t is not None
    ]
    doc["cloud"] = {
        "auth": "refused" if refused else "ok",
        "refused_since": _iso(min(refused)) if refused else None,
        "heartbeat_ok_at": _iso(beat.last_ok_at) if beat else None,
        "heartbeat_error": beat.last_error if beat else None,
        "clock_offset_s": beat.clock_offset_s if beat else None,
    }
    if runtime.coupons is not None:
        report = runtime.coupons.applier.report()
        doc["business_config"] = {
            "settings_version": report.version,
            "config_hash": report.config_hash,
            "refused": report.error.model_dump(mode="json") if report.error else None,
        }
    watchdog = runtime.watchdog
    doc["watchdog"] = {
        "systemd": runtime.notifier.enabled,
        "wedged": [
            {"name": w.name, "overdue_s": round(w.overdue_s, 1)}
            for w in (watchdog.wedges if watchdog else [])
        ],
    }
    return doc


def status_line(doc: dict[str, Any]) -> str:
    """One line for `systemctl status` (STATUS=): the worst news first."""
    parts: list[str] = []
    outbox = doc.get("outbox", {})
    backlog = outbox.get("backlog_events", 0)
    if outbox.get("alerts"):
        parts.append("OUTBOX ALERT: " + outbox["alerts"][-1][:120])
    if doc["cloud"]["auth"] == "refused":
        parts.append(f"TOKEN REFUSED by cloud; buffering {backlog} events; re-enroll")
    elif doc.get("sync", {}).get("state") in ("backing_off", "misconfigured"):
        age = outbox.get("oldest_unsynced_age_s") or 0
        parts.append(f"cloud unreachable; buffering {backlog} events (oldest {age:.0f}s)")
    else:
        parts.append(f"backlog {backlog}")
    devices = doc["devices"]
    online = sum(1 for d in devices if d["state"] == "online")
    parts.append(f"devices {online}/{len(devices)} online")
    down = [d["device_id"] for d in devices if d["state"] in ("offline", "degraded")]
    if down:
        parts.append("check " + ", ".join(down[:3]) + ("…" if len(down) > 3 else ""))
    if (doc.get("business_config") or {}).get("refused"):
        parts.append("business config refused (agent status)")
    return " · ".join(parts)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
