"""POST /v1/enroll: a single-use code for agent credentials."""

from aiohttp import web

from cloud.fleet import enroll_agent
from cloud.keys import AGENT_AUTH, AGENT_GATE, STORAGE
from cloud.responses import json_response
from cloud.views._body import read_model
from protocol.wire import EnrollRequest


async def post_enroll(request: web.Request) -> web.Response:
    """200 `EnrollResponse`; 403 with a reason for an unknown, used or expired code."""
    with request.app[AGENT_GATE].admit():
        body = await read_model(request, EnrollRequest)
        answer = await enroll_agent(request.app[STORAGE], body)
        if body.agent_id is not None:
            request.app[AGENT_AUTH].forget(answer.agent_id)  # the old token is void at once
    return json_response(answer.model_dump(mode="json"))
