"""Two `storeedge cloud serve` replicas over one PostgreSQL, the real agent draining through a
load balancer that alternates between them, answers lost and replicas killed mid-batch: the
database ends with every event exactly once."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from agent.outbox import Identity, Outbox
from agent.sync.client import Credentials, IngestClient
from agent.sync.drain import DrainWorker
from protocol.events import ScanPayload

ADMIN = "replica-admin"
EVENTS_BEFORE, EVENTS_DURING = 1500, 1500
PAYLOAD = ScanPayload(
    raw_b64="NDAxMjM0NTY3ODkwMQ==", text="4012345678901", classification="product"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Replica:
    """One cloud process on a fixed port, killable and restartable."""

    def __init__(self, db_url: str, log: Path) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            proc = self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli.main", "cloud", "serve", "--db", self.db_url,
                 "--port", str(self.port)],
                env={**os.environ, "STOREEDGE_ADMIN_TOKEN": ADMIN},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    self.starts += 1
                    return
            except OSError:
                assert proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        proc.kill()
        proc.wait()
        raise AssertionError(f"replica did not come up: {self.log.read_text()}")

    def stop(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # never leave a replica running past the test
            proc.kill()
            proc.wait()


class AlternatingBalancer:
    """An HTTP load balancer: request n goes to replica n % 2, with faults on cue.

    Every 6th event batch is forwarded but its answer dropped (the agent must retry it, on
    the other replica, and get `duplicate`). From batch 9 on, the first batch sent to
    replica 0 kills it with SIGKILL while the batch is in flight; from batch 21 on, the first
    sent to replica 1 stops it with SIGTERM mid-batch. Each comes back a moment later.
    """

    KILLS = ((9, 0, signal.SIGKILL), (21, 1, signal.SIGTERM))  # (from batch, replica, signal)

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.requests = 0
        self.batches = 0
        self.served = [0, 0]
        self.lost_answers = 0
        self.upstream_down = 0
        self.restarts: list[asyncio.Task[None]] = []
        self._kills = list(self.KILLS)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # The body goes on as received: still gzipped, as the agent sent it.
        app = web.Application(
            client_max_size=8 * 1024 * 1024, handler_args={"auto_decompress": False}
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await asyncio.gather(*self.restarts)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        index = self.requests % 2
        self.requests += 1
        replica = self.replicas[index]
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        batch = 0
        if request.path == "/v1/events":
            self.batches += 1
            batch = self.batches
        forward = asyncio.create_task(
            self._session.request(
                request.method, replica.url + request.path_qs, data=body, headers=headers
            )
        )
        if self._kills and batch >= self._kills[0][0] and index == self._kills[0][1]:
            _, _, sig = self._kills.pop(0)
            await asyncio.sleep(0.003)  # the batch is on its way, its transaction may be open
            await asyncio.to_thread(replica.stop, sig)
            self.restarts.append(asyncio.create_task(self._restart(replica)))
        try:
            upstream = await forward
            answer = await upstream.read()
        except (aiohttp.ClientError, TimeoutError):
            self.upstream_down += 1
            return web.json_response({"error": "upstream unavailable"}, status=502)
        self.served[index] += 1
        if batch and batch % 6 == 0 and upstream.status == 200:
            self.lost_answers += 1
            assert request.transport is not None
            request.transport.close()  # the cloud committed; the agent never hears of it
            raise ConnectionResetError("answer lost on purpose")
        return web.Response(
            body=answer, status=upstream.status, content_type=upstream.content_type,
            headers={k: v for k, v in upstream.headers.items() if k.lower() == "retry-after"},
        )  # fmt: skip

    @staticmethod
    async def _restart(replica: Replica) -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(replica.start)


async def test_retries_across_replicas_and_restarts_store_each_event_once(
    postgres_url: str, tmp_path: Path
) -> None:
    replicas = [Replica(postgres_url, tmp_path / f"replica-{n}.log") for n in range(2)]
    for replica in replicas:
        replica.start()
    balancer = AlternatingBalancer(replicas)
    url = await balancer.start()
    outbox = None
    client = None
    try:
        async with aiohttp.ClientSession() as session:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            async with session.post(
                url + "/api/enroll-codes", json={"store_id": "store-ha"}, headers=admin
            ) as response:
                code = (await response.json())["code"]
            async with session.post(url + "/v1/enroll", json={"code": code}) as response:
                enrolled = await response.json()
        identity = Identity(enrolled["agent_id"], enrolled["store_id"])
        outbox = await Outbox.open(tmp_path / "outbox.db", identity)
        for _ in range(EVENTS_BEFORE):
            await outbox.append("scanner-front", PAYLOAD)
        client = IngestClient(
            Credentials(url, identity.agent_id, identity.store_id, enrolled["token"]), timeout_s=5
        )
        worker = DrainWorker(outbox, client, max_events=100, backoff_base_s=0.05, backoff_cap_s=0.5)
        drain = asyncio.create_task(worker.run())
        for _ in range(EVENTS_DURING):  # captured while batches, kills and restarts go on
            await outbox.append("scanner-front", PAYLOAD)
        deadline = time.monotonic() + 120
        while (await outbox.stats()).backlog_events:
            assert time.monotonic() < deadline, "the agent did not drain"
            assert not drain.done(), drain
            await asyncio.sleep(0.1)
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
    finally:
        await balancer.stop()
        if client is not None:
            await client.close()
        if outbox is not None:
            await outbox.close()
        for replica in replicas:
            replica.stop(signal.SIGTERM)

    total = EVENTS_BEFORE + EVENTS_DURING
    conn = await asyncpg.connect(postgres_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT seq), min(seq), max(seq)"
            " FROM events WHERE agent_id = $1",
            identity.agent_id,
        )
        dedupe_keys = await conn.fetchval("SELECT count(*) FROM event_ids")
        counted = await conn.fetchval("SELECT sum(events) FROM event_counts")
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row) == (total, total, total, 1, total)  # every seq once, nothing twice
    assert dedupe_keys == total
    assert counted == total
    # The scenario really happened: both replicas served, answers were lost and re-sent,
    # each replica went down mid-batch and came back.
    assert min(balancer.served) > 5
    assert balancer.lost_answers >= 3
    assert worker.counters.duplicate > 0
    assert worker.counters.rejected == 0
    assert balancer.upstream_down >= 1
    assert not balancer._kills
    assert [r.starts for r in replicas] == [2, 2]
