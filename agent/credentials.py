"""The agent's enrollment credentials: one JSON file, 0600, written atomically."""

import json
import os
import platform
import socket
from pathlib import Path

import aiohttp
from pydantic import ValidationError

from agent import __version__
from agent.errors import AgentError, ConfigError
from agent.sync.client import Credentials
from protocol.wire import AgentInfo, EnrollRequest, EnrollResponse

CREDENTIALS_FILE = "credentials.json"


class EnrollmentError(AgentError):
    """The cloud refused the code or could not be reached; get a new code or fix the URL."""


def credentials_path(state_dir: Path) -> Path:
    """Where the credentials live inside the state dir."""
    return state_dir / CREDENTIALS_FILE


def load_credentials(state_dir: Path) -> Credentials:
    """Read saved credentials; ConfigError tells the engineer to enroll first."""
    path = credentials_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            cloud_url=data["cloud_url"],
            agent_id=data["agent_id"],
            store_id=data["store_id"],
            token=data["token"],
        )
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: not enrolled; run `storeedge agent enroll --cloud URL --code CODE`"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable credentials ({exc}); enroll again") from exc


def save_credentials(state_dir: Path, credentials: Credentials) -> Path:
    """Write credentials 0600 via a temp file + rename, so a crash leaves old or new, never half."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path(state_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(
            {
                "cloud_url": credentials.cloud_url,
                "agent_id": credentials.agent_id,
                "store_id": credentials.store_id,
                "token": credentials.token,
            },
            handle,
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


async def enroll(cloud_url: str, code: str, timeout_s: float = 15.0) -> Credentials:
    """Trade a single-use enrollment code for this agent's credentials."""
    request = EnrollRequest(
        code=code.strip(),
        agent_info=AgentInfo(
            hostname=socket.gethostname(), version=__version__, platform=platform.platform()
        ),
    )
    url = cloud_url.rstrip("/") + "/v1/enroll"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(url, data=request.model_dump_json(), headers=_JSON) as response,
        ):
            body = await response.read()
            if response.status != 200:
                raise EnrollmentError(
                    f"cloud refused enrollment (HTTP {response.status}): "
                    f"{body[:300].decode('utf-8', 'replace')}"
                )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EnrollmentError(f"cannot reach {url}: {exc}") from exc
    try:
        answer = EnrollResponse.model_validate_json(body)
    except ValidationError as exc:
        raise EnrollmentError(f"cloud answered an unreadable enrollment: {exc}") from exc
    return Credentials(cloud_url.rstrip("/"), answer.agent_id, answer.store_id, answer.token)


_JSON = {"Content-Type": "application/json"}
