"""The agent's enrollment credentials: one JSON file, 0600, written atomically.

Enrollment, re-enrollment (same agent id, fresh token) and token rotation all end in
`save_credentials`; a running agent notices the file change (`CredentialsWatch`) and takes
the new token without a restart.
"""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import platform
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from pydantic import ValidationError

from agent import __version__
from agent.errors import AgentError, ConfigError
from agent.sync.client import Credentials
from protocol.wire import AgentInfo, EnrollRequest, EnrollResponse

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
LOCK_FILE = "credentials.lock"
# How often a running agent looks for new credentials (a stat, nothing more).
WATCH_INTERVAL_S = 2.0


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
    owner = state_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        # `sudo storeedge agent enroll`: the file must belong to the service user that owns
        # the state dir, or the agent could not read its own credentials.
        os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def credentials_lock(state_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of the credentials (two rotations must not cross)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def enroll(
    cloud_url: str,
    code: str,
    agent_id: str | None = None,
    timeout_s: float = 15.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Credentials:
    """Trade a single-use code for credentials; `agent_id` re-enrolls that agent."""
    request = EnrollRequest(
        code=code.strip(),
        agent_info=AgentInfo(
            hostname=socket.gethostname(), version=__version__, platform=platform.platform()
        ),
        agent_id=agent_id,
    )
    data = request.model_dump_json().encode()
    body = await _post(cloud_url, "/v1/enroll", data, {}, timeout_s, ssl_context)
    return _credentials(cloud_url, body)


async def rotate_token(
    credentials: Credentials, timeout_s: float = 15.0, ssl_context: ssl.SSLContext | None = None
) -> Credentials:
    """A new token for this agent; the old one keeps working until the new one is used."""
    auth = {"Authorization": f"Bearer {credentials.token}"}
    body = await _post(
        credentials.cloud_url, "/v1/token/rotate", b"{}", auth, timeout_s, ssl_context
    )
    rotated = _credentials(credentials.cloud_url, body)
    if rotated.agent_id != credentials.agent_id:
        raise EnrollmentError(f"cloud rotated the token of another agent ({rotated.agent_id})")
    return rotated


async def _post(
    cloud_url: str,
    path: str,
    data: bytes,
    headers: dict[str, str],
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    url = cloud_url.rstrip("/") + path
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(
                url, data=data, headers={**_JSON, **headers}, ssl=verify, allow_redirects=False
            ) as response,
        ):
            body = await response.read()
            if response.status != 200:
                raise EnrollmentError(f"cloud refused (HTTP {response.status}): {_reason(body)}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise EnrollmentError(f"cannot reach {url}: {exc}") from exc
    return body


def _credentials(cloud_url: str, body: bytes) -> Credentials:
    try:
        answer = EnrollResponse.model_validate_json(body)
    except ValidationError as exc:
        raise EnrollmentError(f"cloud answered unreadable credentials: {exc}") from exc
    return Credentials(cloud_url.rstrip("/"), answer.agent_id, answer.store_id, answer.token)


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace")
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:300]
    return body[:300].decode("utf-8", "replace")


class CredentialsWatch:
    """Calls `on_change(new)` when the credentials file holds other credentials than ours."""

    def __init__(
        self,
        state_dir: Path,
        current: Credentials,
        on_change: Callable[[Credentials], None],
        interval_s: float = WATCH_INTERVAL_S,
    ) -> None:
        self._path = credentials_path(state_dir)
        self._state_dir = state_dir
        self._current = current
        self._on_change = on_change
        self._interval_s = interval_s
        self._seen = self._signature()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            signature = self._signature()
            if signature == self._seen:
                continue
            self._seen = signature
            try:
                new = await asyncio.to_thread(load_credentials, self._state_dir)
            except ConfigError as exc:  # mid-replace or damaged: keep what works
                log.warning("credentials file changed but is unreadable: %s", exc)
                continue
            if new != self._current:
                self._current = new
                self._on_change(new)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)


_JSON = {"Content-Type": "application/json"}
