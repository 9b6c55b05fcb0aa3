"""GET /v1/agent and POST /v1/token/rotate: an agent asks who it is, or for a new token."""

from datetime import UTC, datetime

from aiohttp import web

from cloud.credentials import hash_secret, new_agent_token
from cloud.errors import Unauthorized
from cloud.keys import AGENT_AUTH, STORAGE
from cloud.responses import json_response
from protocol.wire import AgentSelf, EnrollResponse


async def get_agent(request: web.Request) -> web.Response:
    """200 `AgentSelf` for a valid token (doctor's credential and clock check); 401 otherwise."""
    agent = await request.app[AGENT_AUTH].async_authenticate(request)
    answer = AgentSelf(agent_id=agent.agent_id, store_id=agent.store_id, server_time=_now())
    return json_response(answer.model_dump(mode="json"))


async def post_rotate(request: web.Request) -> web.Response:
    """200 `EnrollResponse` with a new token; the old one works until the new one is used."""
    agent = await request.app[AGENT_AUTH].async_authenticate(request)
    token = new_agent_token()
    if not await request.app[STORAGE].rotate_token(agent.agent_id, hash_secret(token), _now()):
        raise Unauthorized("agent revoked", key="bad_agent_token")
    answer = EnrollResponse(agent_id=agent.agent_id, store_id=agent.store_id, token=token)
    return json_response(answer.model_dump(mode="json"))


def _now() -> datetime:
    return datetime.now(UTC)
