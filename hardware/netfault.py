"""A flaky WAN between agent and cloud: an HTTP proxy on loopback that injects faults on cue.

Faults are chosen per request by a `Schedule`: a seeded random `FaultPlan`, a `TimedSchedule`
of phases (black-hole for 2 s, then 30 % random faults…), or any `(path, n) -> Fault`.
`ProxyThread` runs the proxy on its own loop for synchronous callers (tests, bench/chaos).
"""

import asyncio
import contextlib
import enum
import itertools
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

# A black-holed request is held this long at most (far past any client timeout).
BLACKHOLE_S = 3600.0
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
    DELAY = "delay"  # forward after a short delay (a slow but working link)
    RESET = "reset"  # TCP RST instead of an answer, cloud never sees it
    RESET_AFTER = "reset_after"  # cloud commits, then the connection is reset
    TRUNCATE_AFTER = "truncate_after"  # cloud commits, the answer stops half way


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


@dataclass(frozen=True, slots=True)
class Phase:
    """`schedule` applies for `duration_s` seconds (None: for good)."""

    duration_s: float | None
    schedule: Schedule


def always(fault: Fault) -> Schedule:
    """A schedule that applies `fault` to every request."""
    return lambda path, number: fault


class TimedSchedule:
    """Phases one after another from the first request (or `start()`).

    After the last phase the schedule starts over if `repeat`, else the last phase is kept.
    """

    def __init__(
        self,
        phases: Sequence[Phase],
        *,
        repeat: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not phases:
            raise ValueError("a timed schedule needs at least one phase")
        if repeat and any(phase.duration_s is None for phase in phases):
            raise ValueError("a repeating schedule needs a duration for every phase")
        self.phases = list(phases)
        self.repeat = repeat
        self._clock = clock
        self._started: float | None = None

    def start(self) -> None:
        """Start the clock now rather than at the first request."""
        self._started = self._clock()

    def current(self) -> int:
        """Index of the phase in force now."""
        if self._started is None:
            return 0
        elapsed = self._clock() - self._started
        if self.repeat:
            elapsed %= sum(phase.duration_s or 0.0 for phase in self.phases)
        for index, phase in enumerate(self.phases):
            if phase.duration_s is None or elapsed < phase.duration_s:
                return index
            elapsed -= phase.duration_s
        return len(self.phases) - 1

    def __call__(self, path: str, number: int) -> Fault:
        if self._started is None:
            self.start()
        return self.phases[self.current()].schedule(path, number)


class FaultProxy:
    """Forwards to `upstream`, applying `schedule(path, n)` to the n-th request; counts faults.

    `upstreams` (several cloud replicas) are used in turn, one per request.
    """

    def __init__(
        self,
        upstream: str,
        schedule: Schedule,
        *,
        slow_s: float = 2.0,
        delay_s: float = 0.2,
        retry_after_s: int = 1,
        upstreams: Sequence[str] = (),
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstreams = [u.rstrip("/") for u in upstreams] or [self.upstream]
        self._turn = itertools.cycle(range(len(self.upstreams)))
        self.schedule = schedule
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.retry_after_s = retry_after_s
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()

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
        self._closing.set()
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
        if fault is Fault.RESET:
            return self._drop(request, reset=True)
        if fault is Fault.BLACKHOLE:
            # Silent until the client gives up, or until the proxy stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BLACKHOLE_S):
                    await self._closing.wait()
            return self._drop(request)
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_s)
        if fault is Fault.DELAY:
            await asyncio.sleep(self.delay_s)
        try:
            status, headers, payload = await self._forward(request, body)
        except (aiohttp.ClientError, TimeoutError):
            self.injected["upstream_down"] += 1
            return web.json_response({"error": "upstream unreachable"}, status=502)
        if fault is Fault.ERROR_AFTER:
            return web.json_response({"error": "injected fault after commit"}, status=500)
        if fault is Fault.DROP_AFTER:
            return self._drop(request)
        if fault is Fault.RESET_AFTER:
            return self._drop(request, reset=True)
        if fault is Fault.TRUNCATE_AFTER:
            return self._truncate(request, status, payload)
        return web.Response(status=status, body=payload, headers=headers)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = self.upstreams[next(self._turn)]
        async with self._session.request(
            request.method,
            upstream + request.path_qs,
            data=body,
            headers=headers,
            auto_decompress=False,
        ) as response:
            payload = await response.read()
            out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
            return response.status, out, payload

    @staticmethod
    def _drop(request: web.Request, reset: bool = False) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                # SO_LINGER with a zero timeout: close() sends RST, not FIN (socket(7)).
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(Exception):
                transport.abort()
        # aiohttp needs a response object; the client has already seen the connection die.
        return web.Response(status=499)

    @classmethod
    def _truncate(cls, request: web.Request, status: int, payload: bytes) -> web.StreamResponse:
        # Promise the whole body, send half of it, then cut the line: the client must not
        # take a partial answer for a verdict.
        transport = request.transport
        if transport is not None:
            head = (
                f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode()
            with contextlib.suppress(Exception):
                transport.write(head + payload[: len(payload) // 2])
        return cls._drop(request)


class ProxyThread:
    """A FaultProxy on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(
        self,
        upstream: str,
        schedule: Schedule,
        *,
        slow_s: float = 2.0,
        delay_s: float = 0.2,
        retry_after_s: int = 1,
        upstreams: Sequence[str] = (),
    ) -> None:
        self.proxy = FaultProxy(
            upstream,
            schedule,
            slow_s=slow_s,
            delay_s=delay_s,
            retry_after_s=retry_after_s,
            upstreams=upstreams,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    @property
    def injected(self) -> Counter[str]:
        """Faults injected so far, by name."""
        return self.proxy.injected

    def close(self) -> None:
        """Stop the proxy and its loop; idempotent."""
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
