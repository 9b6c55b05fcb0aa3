"""Run a fleet of virtual agents against one or more cloud URLs; the summary at the end."""

import asyncio
import contextlib
import enum
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sim.agent import AgentPlan, Credentials, VirtualAgent
from sim.stats import FleetStats

ENROLL_ATTEMPTS = 6  # per agent, with backoff: a busy cloud at start-up is not a failure
ENROLL_BACKOFF_S = 0.5
LOOP_TICK_S = 0.1  # how often the simulator measures its own event-loop lag
SHUTDOWN_S = 10.0  # at most this long to cancel the agents and close the connections


class Phase(enum.StrEnum):
    """Where a run is."""

    ENROLLING = "enrolling"
    RUNNING = "running"
    DRAINING = "draining"
    DONE = "done"


@dataclass(frozen=True)
class FleetOptions:
    """What to simulate and against which cloud."""

    clouds: tuple[str, ...]
    admin_token: str
    agents: int
    events_per_min: float  # per agent
    duration_s: float
    heartbeat_s: float = 30.0
    linger_s: float = 0.0
    duplicate_rate: float = 0.0
    bad_rate: float = 0.0
    # HTTP connections per cloud URL; 0 = one per agent as needed, like a real fleet. A cap
    # makes requests queue inside the simulator, and that queue (not the cloud) then sets
    # the latencies and, past the timeouts, a retry storm.
    connections: int = 0
    enroll_concurrency: int = 32
    grace_s: float = 15.0  # after the run, time to deliver what is still pending
    store_prefix: str = "sim"
    seed: int = 1


class Fleet:
    """A run's state, readable while it goes (for the live display)."""

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self.stats = FleetStats()
        self.phase = Phase.ENROLLING
        self.agents: list[VirtualAgent] = []
        self.run_started = 0.0
        self.stop = asyncio.Event()
        self._rng = random.Random(options.seed)

    @property
    def pending(self) -> int:
        """Events captured and not yet answered for."""
        return sum(len(agent.pending) for agent in self.agents)

    async def run(self, on_phase: Callable[[Phase], None] | None = None) -> dict[str, Any]:
        """Enroll, run for the duration (or until `stop`), drain, and summarize."""
        options = self.options
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=options.connections))
            for _ in options.clouds
        ]
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._enroll_all(sessions)
            # Tens of thousands of agents, tasks and buffers are now allocated for good, and
            # the cyclic collector's passes over them stalled the loop for seconds at 10,000
            # agents (loop lag p99 11.5 s with it, 0.36 s without). A run is bounded, so the
            # few cycles made meanwhile wait for the collection after it.
            gc.collect()
            gc.freeze()
            gc.disable()
            self._set(Phase.RUNNING, on_phase)
            self.run_started = time.monotonic()
            tasks.append(asyncio.create_task(self._watch_loop()))
            for agent in self.agents:
                tasks += [
                    asyncio.create_task(agent.capture()),
                    asyncio.create_task(agent.drain()),
                    asyncio.create_task(agent.heartbeat()),
                ]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(options.duration_s):
                    await self.stop.wait()
            self._set(Phase.DRAINING, on_phase)
            for agent in self.agents:
                agent.capturing = False
            deadline = time.monotonic() + options.grace_s
            while self.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a run must end even if some request ignores its cancellation.
            if tasks:
                await asyncio.wait(tasks, timeout=SHUTDOWN_S)
            for session in sessions:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHUTDOWN_S):
                        await session.close()
        gc.enable()
        gc.unfreeze()
        elapsed = time.monotonic() - self.run_started if self.run_started else 0.0
        self.stats.events["undelivered"] = self.pending
        self._set(Phase.DONE, on_phase)
        return self.stats.summary(elapsed)

    async def _enroll_all(self, sessions: list[aiohttp.ClientSession]) -> None:
        options = self.options
        plan = AgentPlan(
            events_per_s=options.events_per_min / 60.0,
            heartbeat_s=options.heartbeat_s,
            linger_s=options.linger_s,
            duplicate_rate=options.duplicate_rate,
            bad_rate=options.bad_rate,
        )
        gate = asyncio.Semaphore(options.enroll_concurrency)

        async def one(n: int) -> None:
            url = options.clouds[n % len(options.clouds)]
            session = sessions[n % len(sessions)]
            async with gate:
                if self.stop.is_set():
                    return
                credentials = await self._enroll(session, url, f"{options.store_prefix}-{n:06d}")
            if credentials is None:
                self.stats.enroll_failed += 1
                return
            rng = random.Random(self._rng.getrandbits(64))
            self.agents.append(VirtualAgent(url, session, credentials, plan, self.stats, rng))
            self.stats.enrolled += 1

        await asyncio.gather(*(one(n) for n in range(options.agents)))

    async def _enroll(
        self, session: aiohttp.ClientSession, url: str, store_id: str
    ) -> Credentials | None:
        admin = {"Authorization": f"Bearer {self.options.admin_token}"}
        for attempt in range(ENROLL_ATTEMPTS):
            try:
                async with session.post(
                    url + "/api/enroll-codes", json={"store_id": store_id}, headers=admin
                ) as response:
                    if response.status == 200:
                        code = orjson.loads(await response.read())["code"]
                        async with session.post(url + "/v1/enroll", json={"code": code}) as done:
                            if done.status == 200:
                                data = orjson.loads(await done.read())
                                return Credentials(
                                    data["agent_id"], data["store_id"], data["token"]
                                )
                    elif response.status in (401, 403):
                        raise PermissionError("the cloud refused the admin token")
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(ENROLL_BACKOFF_S * 2**attempt * self._rng.random())
        return None

    async def _watch_loop(self) -> None:
        # A late tick means the simulator itself is the bottleneck: its latencies then
        # include its own queueing, and the summary says so.
        expected = time.monotonic() + LOOP_TICK_S
        while True:
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            self.stats.loop_lag.add(max(0.0, now - expected), self._rng.random())
            expected = now + LOOP_TICK_S

    def _set(self, phase: Phase, on_phase: Callable[[Phase], None] | None) -> None:
        self.phase = phase
        if on_phase is not None:
            on_phase(phase)
