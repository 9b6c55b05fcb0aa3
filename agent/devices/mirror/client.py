"""HTTP and WebSocket calls to one mirror; aiohttp errors become MirrorError here, once."""

import asyncio
import contextlib
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from agent.devices.mirror.discovery import MirrorAddress
from agent.devices.mirror.errors import (
    MirrorProtocolError,
    MirrorRejectedError,
    MirrorUnavailableError,
)
from protocol.mirror_api import (
    DISPLAY_PATH,
    EVENTS_PATH,
    INFO_PATH,
    MAX_MESSAGE_BYTES,
    ApiError,
    DisplayAck,
    DisplayRequest,
    MirrorInfo,
)

REQUEST_TIMEOUT_S = 5.0  # GET /info, POST /display, and the /events handshake
# WebSocket ping interval: notices a mirror that lost power (no FIN) within ~1.5 intervals.
HEARTBEAT_S = 15.0
CLOSE_TIMEOUT_S = 2.0  # a mirror that does not answer our close frame is simply dropped
# aiohttp closes the stream on a bigger frame; smaller oversized ones are skipped by the
# stream reader, so one bad event does not cost a reconnect.
MAX_FRAME_BYTES = 4 * MAX_MESSAGE_BYTES
_NET_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
M = TypeVar("M", bound=BaseModel)


class EventSocket:
    """One open /events stream: `receive` frames, `send` acks, `close` when done."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws  # aiohttp.ClientWebSocketResponse (generic only in newer aiohttp)
        self.close_reason = ""

    async def receive(self, timeout: float) -> str | bytes | None:
        """The next frame, None once the stream is closed; TimeoutError if idle for `timeout`."""
        msg = await self._ws.receive(timeout=timeout)
        if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
            data: str | bytes = msg.data
            return data
        if msg.type is aiohttp.WSMsgType.ERROR:
            self.close_reason = f"stream error: {msg.data!r}"
        else:
            self.close_reason = f"closed by mirror (code {self._ws.close_code})"
        return None

    async def send(self, text: str) -> None:
        """Send one frame; raises MirrorUnavailableError if the stream is gone."""
        try:
            await self._ws.send_str(text)
        except _NET_ERRORS as exc:
            raise MirrorUnavailableError(f"stream lost while sending: {exc!r}") from exc

    async def close(self) -> None:
        """Close the stream; never raises."""
        with contextlib.suppress(*_NET_ERRORS):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._ws.close()


class MirrorClient:
    """Requests to mirrors over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def info(self, address: MirrorAddress) -> MirrorInfo:
        """GET /info."""
        status, body = await self._request("GET", address, INFO_PATH, None)
        if status != 200:
            raise _status_error(status, body, INFO_PATH)
        return _parse(MirrorInfo, body, INFO_PATH)

    async def display(self, address: MirrorAddress, request: DisplayRequest) -> DisplayAck:
        """POST /display; MirrorRejectedError carries the mirror's reason for a 400."""
        status, body = await self._request("POST", address, DISPLAY_PATH, request)
        if status == 400:
            reason = _parse(ApiError, body, DISPLAY_PATH).error
            raise MirrorRejectedError(f"mirror refused the display request: {reason}")
        if status != 200:
            raise _status_error(status, body, DISPLAY_PATH)
        return _parse(DisplayAck, body, DISPLAY_PATH)

    async def subscribe(self, address: MirrorAddress, params: dict[str, str]) -> EventSocket:
        """Open GET /events?after=…; the caller must `close` the returned socket."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                ws = await self._session.ws_connect(
                    address.url + EVENTS_PATH,
                    params=params,
                    heartbeat=HEARTBEAT_S,
                    max_msg_size=MAX_FRAME_BYTES,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise _status_error(exc.status, b"", EVENTS_PATH) from exc
        except _NET_ERRORS as exc:
            raise MirrorUnavailableError(f"{address.url}: cannot subscribe: {exc!r}") from exc
        return EventSocket(ws)

    async def _request(
        self, method: str, address: MirrorAddress, path: str, body: BaseModel | None
    ) -> tuple[int, bytes]:
        data = body.model_dump_json().encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        answer = bytearray()
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_S),
                self._session.request(method, address.url + path, data=data, headers=headers) as r,
            ):
                async for chunk in r.content.iter_chunked(MAX_MESSAGE_BYTES):
                    answer += chunk
                    if len(answer) > MAX_MESSAGE_BYTES:
                        break  # enough to know it is too big; _parse refuses it
                return r.status, bytes(answer)
        except _NET_ERRORS as exc:
            raise MirrorUnavailableError(f"{method} {address.url}{path}: {exc!r}") from exc


def _parse(model: type[M], body: bytes, path: str) -> M:
    if len(body) > MAX_MESSAGE_BYTES:
        raise MirrorProtocolError(f"{path}: answer larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise MirrorProtocolError(f"{path}: answer is not a valid {model.__name__}") from exc


def _status_error(status: int, body: bytes, path: str) -> Exception:
    if status >= 500:
        return MirrorUnavailableError(f"{path}: mirror answered {status}")
    return MirrorProtocolError(f"{path}: mirror answered {status}")
