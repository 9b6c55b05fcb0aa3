"""A smart mirror speaking protocol/mirror_api over aiohttp, advertised by mDNS (devices.md §3)."""

import asyncio
import contextlib
import json
import random
import re
import socket
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from protocol import mirror_api as api

BACKLOG = 1000  # events kept for ?after= replay; docs/MIRRORS.md asks mirrors for at least this
SHUTDOWN_TIMEOUT_S = 1.0  # websockets are closed first, so nothing should still be running
E = TypeVar("E", api.SessionStart, api.SessionEnd, api.Tryon, api.Photo, api.CouponClaim)


class _Subscriber:
    """One /events connection: messages not yet sent, and a flag once it fell too far behind."""

    def __init__(self, ws: web.WebSocketResponse, first: list[str]) -> None:
        self.ws = ws
        self.pending: deque[str] = deque(first)
        self.wake = asyncio.Event()
        self.overflowed = False


class MirrorEmulator:
    """One mirror: `start`/`stop` its HTTP service (a new port each time); emit events to it."""

    def __init__(
        self,
        mirror_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = "StoreEdge EmuMirror",
        firmware: str = "emu-1.0",
        backlog: int = BACKLOG,
        service_type: str = api.SERVICE_TYPE,
        zeroconf: AsyncZeroconf | None = None,
        mdns: bool = True,
    ) -> None:
        self.info = api.MirrorInfo(
            id=mirror_id, model=model, api_version=api.API_VERSION, firmware=firmware
        )
        self.host, self.port = host, port
        self._requested_port = port  # 0: a free port, chosen afresh on every start
        self.service_type = service_type
        self.epoch = uuid.uuid4().hex[:16]
        self.displayed: list[api.DisplayRequest] = []  # each request_id once, in arrival order
        self.display_rejections = 0
        self.acked = 0  # highest counter the agent acknowledged
        self.subscriptions = 0  # /events connections accepted so far
        self._latest = 0
        self._backlog: deque[tuple[int, str]] = deque(maxlen=backlog)
        self._subscribers: set[_Subscriber] = set()
        self._runner: web.AppRunner | None = None
        self._mdns, self._zc, self._owns_zc = mdns, zeroconf, zeroconf is None
        self._advertised: AsyncServiceInfo | None = None

    @property
    def url(self) -> str:
        """Base URL while started."""
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int | None = None) -> None:
        """Serve on `port` (default: the constructor's; 0: a fresh free one) and advertise it."""
        app = web.Application()
        app.router.add_get(api.INFO_PATH, self._info)
        app.router.add_get(api.EVENTS_PATH, self._events)
        app.router.add_post(api.DISPLAY_PATH, self._display)
        runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
        await runner.setup()
        wanted, previous = self._requested_port if port is None else port, self.port
        for _ in range(5):  # a restart on "any port" must really move (the kernel may reuse)
            site = web.TCPSite(runner, self.host, wanted)
            await site.start()
            if wanted or runner.addresses[-1][1] != previous:
                break
            await site.stop()
        self._runner = runner
        self.port = runner.addresses[-1][1]
        if self._mdns:
            await self._advertise()

    async def stop(self) -> None:
        """Say goodbye on mDNS, close every stream (1001 going away) and the server. Idempotent."""
        if self._advertised is not None and self._zc is not None:
            await (await self._zc.async_unregister_service(self._advertised))
            self._advertised = None
        for sub in list(self._subscribers):
            await sub.ws.close(code=WSCloseCode.GOING_AWAY, message=b"mirror stopping")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def close(self) -> None:
        """Stop, and close the zeroconf instance if this emulator made it. Idempotent."""
        await self.stop()
        if self._zc is not None and self._owns_zc:
            zc, self._zc = self._zc, None
            await zc.async_close()

    async def __aenter__(self) -> "MirrorEmulator":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what shoppers do ---------------------------------------------------------------

    def session_start(
        self, session_id: str | None = None, trigger: str = "presence", staff_id: str | None = None
    ) -> api.SessionStart:
        """A shopper steps up; returns the event as sent (a session id is made if not given)."""
        sid = session_id or f"s-{uuid.uuid4().hex[:12]}"
        return self._emit(api.SessionStart, session_id=sid, trigger=trigger, staff_id=staff_id)

    def session_end(self, session_id: str, duration_s: float | None = None) -> api.SessionEnd:
        """The shopper leaves."""
        return self._emit(api.SessionEnd, session_id=session_id, duration_s=duration_s)

    def tryon(
        self, session_id: str, *, barcode: str | None = None, epc: str | None = None
    ) -> api.Tryon:
        """An item (by barcode or RFID EPC) reaches the mirror."""
        return self._emit(
            api.Tryon, session_id=session_id, item=api.ItemRef(barcode=barcode, epc=epc)
        )

    def photo(
        self, session_id: str, *, barcode: str | None = None, epc: str | None = None
    ) -> api.Photo:
        """The shopper takes a photo wearing an item."""
        item = api.ItemRef(barcode=barcode, epc=epc)
        return self._emit(api.Photo, session_id=session_id, item=item, media_id=uuid.uuid4().hex)

    def coupon_claim(
        self, session_id: str, token: str, campaign_hint: str | None = None
    ) -> api.CouponClaim:
        """The shopper claims a coupon on the mirror."""
        return self._emit(
            api.CouponClaim, session_id=session_id, token=token, campaign_hint=campaign_hint
        )

    # --- bad input, for tests ------------------------------------------------------------

    def emit_raw(self, fields: dict[str, Any]) -> int:
        """Publish `fields` plus a fresh counter/msg_id/at, unvalidated (unknown types…)."""
        counter = self._next_counter()
        message = {"counter": counter, "msg_id": f"m{counter}", "at": _now().isoformat()}
        self._publish(counter, json.dumps(message | fields))
        return counter

    def send_garbage(self, text: str = '{"type": "tryon", "counter": ') -> None:
        """Send a text frame that is not JSON to live subscribers (never replayed)."""
        self._fan_out(text)

    def flood(self, session_id: str, count: int) -> list[api.Tryon]:
        """`count` try-ons back to back, as a stuck RFID reader would report them."""
        return [self.tryon(session_id, epc=f"3034257BF7194E40{i:08X}") for i in range(count)]

    # --- internals ----------------------------------------------------------------------

    def _emit(self, model: type[E], **fields: Any) -> E:
        counter = self._next_counter()
        event = model(counter=counter, msg_id=f"m{counter}", at=_now(), **fields)
        self._publish(counter, event.model_dump_json(exclude_none=True))
        return event

    def _next_counter(self) -> int:
        self._latest += 1
        return self._latest

    def _publish(self, counter: int, text: str) -> None:
        self._backlog.append((counter, text))
        self._fan_out(text)

    def _fan_out(self, text: str) -> None:
        for sub in self._subscribers:
            # A consumer this far behind would lose events anyway: drop it and let it resume.
            if len(sub.pending) >= (self._backlog.maxlen or BACKLOG):
                sub.overflowed = True
            else:
                sub.pending.append(text)
            sub.wake.set()

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(text=self.info.model_dump_json())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            after = int(request.query.get("after", "0"))
            if after < 0:
                raise ValueError(after)
        except ValueError:
            return _error(400, "after must be a non-negative integer")
        if request.query.get("epoch") != self.epoch:
            after = 0  # another epoch's counter means nothing here: replay everything
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Snapshot the backlog and subscribe with no await between: nothing missed or sent twice.
        oldest = self._backlog[0][0] if self._backlog else self._latest + 1
        hello = api.Hello(
            mirror_id=self.info.id, epoch=self.epoch, oldest=oldest, latest=self._latest
        )
        replay = [text for counter, text in self._backlog if counter > after]
        sub = _Subscriber(ws, [hello.model_dump_json(), *replay])
        self._subscribers.add(sub)
        self.subscriptions += 1
        sender = asyncio.create_task(self._send(sub))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    with contextlib.suppress(ValidationError):
                        self.acked = max(self.acked, api.Ack.model_validate_json(msg.data).counter)
        finally:
            self._subscribers.discard(sub)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send(self, sub: _Subscriber) -> None:
        with contextlib.suppress(ConnectionError):
            while not sub.ws.closed:
                while sub.pending and not sub.overflowed:
                    await sub.ws.send_str(sub.pending.popleft())
                if sub.overflowed:
                    await sub.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too far behind")
                    return
                sub.wake.clear()
                await sub.wake.wait()

    async def _display(self, request: web.Request) -> web.Response:
        try:
            display = api.DisplayRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            self.display_rejections += 1
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(400, f"{where}: {first['msg']}"[:256])
        if all(shown.request_id != display.request_id for shown in self.displayed):
            self.displayed.append(display)
        return web.json_response(
            text=api.DisplayAck(request_id=display.request_id).model_dump_json()
        )

    async def _advertise(self) -> None:
        if self._zc is None:
            self._zc = AsyncZeroconf(interfaces=[self.host], ip_version=IPVersion.V4Only)
        label = re.sub(r"[^A-Za-z0-9-]", "-", self.info.id)  # instance and host labels
        advert = api.MirrorAdvert(id=self.info.id, model=self.info.model, api=api.API_VERSION)
        info = AsyncServiceInfo(
            self.service_type,
            f"{label}.{self.service_type}",
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            properties=advert.properties(),
            server=f"mirror-{label}.local.",
        )
        # The returned awaitable is what sends the announcements (devices.md §3).
        await (await self._zc.async_register_service(info))
        self._advertised = info


async def shopper_traffic(
    mirror: MirrorEmulator,
    rng: random.Random,
    pace_s: float = 2.0,
    on_event: Callable[[Any], None] = lambda event: None,
) -> None:
    """Generate shopper sessions on `mirror` until cancelled, about one action per `pace_s`."""
    while True:
        start = mirror.session_start(trigger=rng.choice(["presence", "touch", "rfid"]))
        on_event(start)
        began = asyncio.get_running_loop().time()
        for _ in range(rng.randint(1, 4)):
            await asyncio.sleep(pace_s * rng.uniform(0.5, 1.5))
            item = _random_item(rng)
            on_event(mirror.tryon(start.session_id, **item))
            if rng.random() < 0.3:
                on_event(mirror.photo(start.session_id, **item))
        if rng.random() < 0.25:
            token = f"MIRROR-{rng.randrange(16**8):08X}"
            on_event(mirror.coupon_claim(start.session_id, token, campaign_hint="spring"))
        await asyncio.sleep(pace_s * rng.uniform(0.5, 1.5))
        duration = round(asyncio.get_running_loop().time() - began, 1)
        on_event(mirror.session_end(start.session_id, duration))
        await asyncio.sleep(pace_s * rng.uniform(1.0, 3.0))


def _random_item(rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.5:
        digits = [rng.randrange(10) for _ in range(12)]
        check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
        return {"barcode": "".join(map(str, digits)) + str(check)}  # a valid EAN-13
    return {"epc": f"3034{rng.randrange(16**20):020X}"}  # SGTIN-96 header 0x30


def _error(status: int, message: str) -> web.Response:
    return web.json_response(text=api.ApiError(error=message).model_dump_json(), status=status)


def _now() -> datetime:
    return datetime.now(UTC)
