"""A flaky WAN between agent and cloud: an HTTP proxy on loopback that injects faults on cue."""

import asyncio
import contextlib
import enum
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Fault(enum.StrEnum):
    """What the proxy does to one request."""

    PASS = "pass"
    ERROR_BEFORE = "error_before"  # answer 500, cloud never sees it
    ERROR_AFTER = "error_after"  # cloud commits, agent sees 500 (the retry must dedupe)
    SLOW = "slow"  # forward after a delay longer than a typical client timeout
    DROP_BEFORE = "drop_before"  # close the connection without forwarding
    DROP_AFTER = "drop_after"  # cloud commits, connection dies before the answer
    THROTTLE = "throttle"  # 429 with Retry-After
    BLACKHOLE = "blackhole"  # never answer (until the client gives up)


Schedule = Callable[[str, int], Fault]


@dataclass
class FaultPlan:
    """Random faults on a fraction of matching requests; reproducible with a seed."""

    rate: float = 0.3
    faults: tuple[Fault, ...] = (
        Fault.ERROR_BEFORE,
        Fault.ERROR_AFTER,
        Fault.SLOW,
        Fault.DROP_BEFORE,
        Fault.DROP_AFTER,
        Fault.THROTTLE,
    )
    paths: tuple[str, ...] = ("/v1/events",)
    seed: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self, path: str, number: int) -> Fault:
        if path not in self.paths or self.rng.random() >= self.rate:
            return Fault.PASS
        return self.rng.choice(self.faults)


class FaultProxy:
    """Forwards to `upstream`, applying `schedule(path, n)` to the n-th request; counts faults."""

    def __init__(
        self,
        upstream: str,
        schedule: Schedule,
        *,
        slow_s: float = 2.0,
        retry_after_s: int = 1,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.schedule = schedule
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on loopback; returns the proxy's base URL."""
        # Bodies are forwarded byte for byte: a gzipped batch must stay gzipped.
        app = web.Application(
            client_max_size=64 * 1024 * 1024, handler_args={"auto_decompress": False}
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{host}:{bound}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self.url

    async def stop(self) -> None:
        """Stop listening and close the upstream session."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        fault = self.schedule(request.path, self.requests)
        if fault is not Fault.PASS:
            self.injected[fault.value] += 1
        body = await request.read()
        if fault is Fault.ERROR_BEFORE:
            return web.json_response({"error": "injected fault"}, status=500)
        if fault is Fault.THROTTLE:
            return web.json_response(
                {"error": "injected throttle"},
                status=429,
                headers={"Retry-After": str(self.retry_after_s)},
            )
        if fault is Fault.DROP_BEFORE:
            return self._drop(request)
        if fault is Fault.BLACKHOLE:
            await asyncio.sleep(3600)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_s)
        try:
            status, headers, payload = await self._forward(request, body)
        except (aiohttp.ClientError, TimeoutError):
            return web.json_response({"error": "upstream unreachable"}, status=502)
        if fault is Fault.ERROR_AFTER:
            return web.json_response({"error": "injected fault after commit"}, status=500)
        if fault is Fault.DROP_AFTER:
            return self._drop(request)
        return web.Response(status=status, body=payload, headers=headers)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=body,
            headers=headers,
            auto_decompress=False,
        ) as response:
            payload = await response.read()
            out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
            return response.status, out, payload

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()
        # aiohttp needs a response object; the client has already seen the connection die.
        return web.Response(status=499)
