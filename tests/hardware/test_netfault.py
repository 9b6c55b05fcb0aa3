"""The fault proxy does what each fault says, seen from a real client and a real upstream."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hardware.netfault import Fault, FaultProxy, Phase, TimedSchedule, always


class _Upstream:
    """A loopback server that counts what it committed."""

    def __init__(self) -> None:
        self.committed = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.committed += 1
        return web.json_response({"results": ["x" * 200]})


@pytest.fixture
async def upstream() -> AsyncIterator[_Upstream]:
    server = _Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


async def _post(proxy: FaultProxy, timeout: float = 5) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(proxy.url + "/v1/events", data=b"{}") as response,
    ):
        await response.read()
        return response.status


@pytest.mark.parametrize(
    ("fault", "committed"),
    [(Fault.RESET, 0), (Fault.RESET_AFTER, 1), (Fault.DROP_AFTER, 1), (Fault.TRUNCATE_AFTER, 1)],
)
async def test_connection_faults_reach_the_client_as_errors(
    upstream: _Upstream, fault: Fault, committed: int
) -> None:
    proxy = FaultProxy(upstream.url, always(fault))
    await proxy.start()
    try:
        with pytest.raises(aiohttp.ClientError):
            await _post(proxy)
    finally:
        await proxy.stop()
    assert upstream.committed == committed, "the fault hit the wrong side of the commit"
    assert proxy.injected[fault.value] == 1


async def test_truncated_answer_is_never_a_readable_verdict(upstream: _Upstream) -> None:
    proxy = FaultProxy(upstream.url, always(Fault.TRUNCATE_AFTER))
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.post(proxy.url + "/v1/events", data=b"{}")
            assert response.status == 200  # the head arrived whole...
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()  # ...the body did not
    finally:
        await proxy.stop()


async def test_black_hole_holds_until_the_client_gives_up_and_stop_releases_it(
    upstream: _Upstream,
) -> None:
    proxy = FaultProxy(upstream.url, always(Fault.BLACKHOLE))
    await proxy.start()
    with pytest.raises(TimeoutError):
        await _post(proxy, timeout=0.3)
    await proxy.stop()  # returns promptly although a black-holed request is pending
    assert upstream.committed == 0


async def test_timed_schedule_runs_its_phases_and_repeats() -> None:
    now = [0.0]
    schedule = TimedSchedule(
        [Phase(1.0, always(Fault.BLACKHOLE)), Phase(2.0, always(Fault.PASS))],
        repeat=True,
        clock=lambda: now[0],
    )
    seen = []
    for t in (0.0, 0.5, 1.0, 2.9, 3.0, 3.5, 4.2):
        now[0] = t
        seen.append(schedule("/v1/events", 1))
    assert seen == [Fault.BLACKHOLE, Fault.BLACKHOLE, Fault.PASS, Fault.PASS, Fault.BLACKHOLE,
                    Fault.BLACKHOLE, Fault.PASS]  # fmt: skip
    kept = TimedSchedule([Phase(1.0, always(Fault.RESET)), Phase(None, always(Fault.PASS))])
    assert kept("/", 1) is Fault.RESET
    with pytest.raises(ValueError, match="duration"):
        TimedSchedule([Phase(None, always(Fault.PASS))], repeat=True)


async def test_requests_rotate_over_replicas_and_a_dead_one_is_a_502(
    upstream: _Upstream,
) -> None:
    proxy = FaultProxy(
        upstream.url, always(Fault.PASS), upstreams=[upstream.url, "http://127.0.0.1:9"]
    )
    await proxy.start()
    try:
        statuses = [await _post(proxy) for _ in range(4)]
    finally:
        await proxy.stop()
    assert statuses == [200, 502, 200, 502]
    assert proxy.injected["upstream_down"] == 2
