"""Checks of the way to the cloud, in the order they depend on each other.

DNS, then TCP, then TLS, then the service answering, then our token, then our clock against
the cloud's. The first failure skips what depends on it, so the table names one cause.
"""

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from agent.diagnostics.checks import CheckResult
from agent.sync.client import Credentials
from protocol.wire import AgentSelf

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0
# Past this the box's clock is wrong enough to matter: event times, coupon windows, TLS.
MAX_CLOCK_OFFSET_S = 5.0
NETWORK_FIX = (
    "check the store's internet link and that outbound {port}/tcp is allowed; "
    "the agent keeps buffering meanwhile"
)


async def check_cloud(
    url: str,
    credentials: Credentials | None,
    ca_bundle: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> list[CheckResult]:
    """DNS, TCP, TLS, /healthz, the token and the clock offset, with skips after a failure."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    results: list[CheckResult] = []

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        results.append(
            CheckResult.fail(
                "cloud DNS",
                f"cannot resolve {host}: {exc}",
                "check /etc/resolv.conf (or the DHCP DNS) and the [cloud] url spelling",
            )
        )
        return results + _skipped(
            "cloud reachable", "cloud TLS", "cloud service", "credentials", "clock"
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    results.append(CheckResult.ok("cloud DNS", f"{host} → {', '.join(addresses[:3])}"))

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
    except (OSError, TimeoutError) as exc:
        why = _why(exc)
        results.append(
            CheckResult.fail(
                "cloud reachable", f"{host}:{port}: {why}", NETWORK_FIX.format(port=port)
            )
        )
        return results + _skipped("cloud TLS", "cloud service", "credentials", "clock")
    results.append(CheckResult.ok("cloud reachable", f"{host}:{port} accepts connections"))

    context: ssl.SSLContext | bool = True
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host
                )
            writer.close()
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            results.append(
                CheckResult.fail(
                    "cloud TLS",
                    f"TLS to {host} failed: {exc}",
                    "if the clock is wrong fix it first (certificates look expired); otherwise "
                    "set [cloud] ca_bundle to the CA the proxy uses",
                )
            )
            return results + _skipped("cloud service", "credentials", "clock")
        results.append(CheckResult.ok("cloud TLS", f"certificate of {host} verified"))
    else:
        results.append(CheckResult.skip("cloud TLS", "plain http (demo and tests only)"))

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    base = url.rstrip("/")
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(base + "/healthz", ssl=context) as response:
                healthy = response.status
                date_header = response.headers.get("Date")
        except (aiohttp.ClientError, TimeoutError) as exc:
            results.append(
                CheckResult.fail(
                    "cloud service", f"GET /healthz: {exc}", NETWORK_FIX.format(port=port)
                )
            )
            return results + _skipped("credentials", "clock")
        if healthy != 200:
            results.append(
                CheckResult.fail(
                    "cloud service",
                    f"GET /healthz: HTTP {healthy}",
                    "the cloud is degraded: tell head office; the agent keeps buffering",
                )
            )
        else:
            results.append(CheckResult.ok("cloud service", f"{base} healthy"))

        server_time: float | None = None
        sent = clock()
        if credentials is None:
            results.append(CheckResult.skip("credentials", "not enrolled"))
        else:
            headers = {"Authorization": f"Bearer {credentials.token}"}
            try:
                async with session.get(base + "/v1/agent", headers=headers, ssl=context) as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, body = 0, str(exc).encode()
            received = clock()
            if status == 200:
                try:
                    me = AgentSelf.model_validate_json(body)
                    server_time = me.server_time.timestamp()
                    results.append(
                        CheckResult.ok("credentials", f"the cloud knows this box as {me.agent_id}")
                    )
                except ValidationError:
                    results.append(
                        CheckResult.fail(
                            "credentials",
                            "unreadable answer from /v1/agent",
                            "the cloud is too old or not storeedge",
                        )
                    )
            elif status in (401, 403):
                results.append(
                    CheckResult.fail(
                        "credentials",
                        "the cloud refuses this box's token (revoked or unknown)",
                        "get a new code (`storeedge cloud enroll-code --store "
                        f"{credentials.store_id}`), then `storeedge agent enroll --cloud {base} "
                        "--code CODE`: the box keeps its agent id and buffered events",
                    )
                )
            else:
                results.append(
                    CheckResult.fail(
                        "credentials",
                        f"GET /v1/agent: HTTP {status}",
                        "retry later; tell head office if it persists",
                    )
                )
            midpoint = (sent + received) / 2
        if server_time is None and date_header:
            try:  # whole seconds only, but it works before enrollment too
                server_time = parsedate_to_datetime(date_header).timestamp()
                midpoint = clock()
            except (TypeError, ValueError):
                server_time = None
        if server_time is None:
            results.append(CheckResult.skip("clock", "the cloud gave no time"))
        else:
            offset = server_time - midpoint
            results.append(_clock_result(offset))
    return results


def _clock_result(offset: float) -> CheckResult:
    detail = f"this box is {abs(offset):.1f} s {'behind' if offset > 0 else 'ahead of'} the cloud"
    if abs(offset) > MAX_CLOCK_OFFSET_S:
        return CheckResult.fail(
            "clock",
            detail,
            "turn on NTP: `timedatectl set-ntp true`, check "
            "`timedatectl timesync-status`, allow outbound 123/udp",
        )
    return CheckResult.ok("clock", detail)


def _why(exc: BaseException) -> str:
    """The errno's own words ("Connection refused"); asyncio's message leaves them out."""
    if isinstance(exc, TimeoutError) or not isinstance(exc, OSError):
        return "timed out"
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _skipped(*names: str) -> list[CheckResult]:
    return [CheckResult.skip(name, "blocked by the failure above") for name in names]
