"""Talking to the running agent through its status page API (the agent owns the devices)."""

import ipaddress
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import AgentConfig
from agent.status_page.server import ACTION_HEADER

PROBE_TIMEOUT_S = 2.0


class AgentNotRunning(Exception):
    """Nothing answers on the status page address: the agent is down (or the page is off)."""


def base_url(config: AgentConfig) -> str:
    """Where this box's agent answers; a wildcard bind is reached on loopback."""
    host = config.status_page.host
    if host in ("0.0.0.0", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.status_page.port}"


def _token(config: AgentConfig) -> str | None:
    """The LAN token, needed only when the page listens on one LAN address alone."""
    host = config.status_page.host
    try:
        if ipaddress.ip_address(host).is_loopback or host in ("0.0.0.0", "::"):
            return None
    except ValueError:
        return None
    path = config.status_page.token_file or Path(config.agent.state_dir) / "statuspage.token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


async def call(
    config: AgentConfig, method: str, path: str, timeout_s: float = PROBE_TIMEOUT_S
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of one API call; AgentNotRunning if nothing listens."""
    if not config.status_page.enabled:
        raise AgentNotRunning("the status page is disabled in agent.toml ([status_page])")
    headers = {ACTION_HEADER: "1"}
    token = _token(config)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = base_url(config) + path
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.request(method, url, headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise AgentNotRunning(f"no agent answers at {base_url(config)}: {exc}") from exc
