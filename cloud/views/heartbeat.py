"""POST /v1/heartbeat: keep the agent's latest health report, answer with the cloud's clock."""

from datetime import UTC, datetime, timedelta

from aiohttp import web

from cloud.errors import RateLimited
from cloud.keys import AGENT_AUTH, AGENT_GATE, CONFIG, SETTINGS_STORAGE, STORAGE
from cloud.responses import json_response
from cloud.storage.base import HeartbeatRecord
from cloud.views._body import in_utc, read_model
from protocol.wire import Heartbeat, HeartbeatResponse


async def post_heartbeat(request: web.Request) -> web.Response:
    """200 `HeartbeatResponse(server_time, agent_id)`; 400 malformed; 429 sooner than allowed."""
    app = request.app
    with app[AGENT_GATE].admit():
        agent = await app[AGENT_AUTH].async_authenticate(request)
        heartbeat = await read_model(request, Heartbeat)
        if heartbeat.config_error is not None:  # stored as a time column, unlike the rest
            in_utc(heartbeat.config_error.at, "config_error.at")
        now = datetime.now(UTC)
        record = HeartbeatRecord(
            received_at=now,
            backlog_events=heartbeat.backlog_events,
            oldest_unsynced_age_s=heartbeat.oldest_unsynced_age_s,
            body=heartbeat.model_dump(mode="json"),
        )
        interval = app[CONFIG].heartbeat_min_interval_s
        # The interval is checked by the same UPDATE that stores the heartbeat: no extra
        # round trip, and no per-process memory of when each agent last called.
        stored = await app[STORAGE].record_heartbeat(
            agent.agent_id, record, timedelta(seconds=interval)
        )
        if stored and (heartbeat.config_hash is not None or heartbeat.config_error is not None):
            # Kept apart from the heartbeat so the console keeps the last refusal after it heals.
            await app[SETTINGS_STORAGE].record_config_report(
                agent.agent_id, heartbeat.config_version, heartbeat.config_hash,
                heartbeat.config_error, now,
            )  # fmt: skip
    if not stored:
        raise RateLimited(
            f"heartbeats must be at least {interval:g} s apart", interval, "heartbeat_too_soon"
        )
    answer = HeartbeatResponse(server_time=now, agent_id=agent.agent_id)
    return json_response(answer.model_dump(mode="json"))
