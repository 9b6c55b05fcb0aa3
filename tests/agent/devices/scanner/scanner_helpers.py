"""Helpers for the loop-based scanner driver tests: a recording EventSink and `running`."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest

from agent.devices.base import Driver, Payload
from protocol.events import DeviceStatusPayload, ScanPayload


class RecordingSink:
    """In-memory EventSink; `delay_s` makes each capture slow, to show they never overlap."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.events: list[tuple[str, Payload]] = []
        self.losses: dict[str, int] = {}
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        assert occurred_at is not None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            self.events.append((device_id, payload))
        finally:
            self.in_flight -= 1

    async def count_loss(self, reason: str, count: int = 1) -> None:
        self.losses[reason] = self.losses.get(reason, 0) + count

    def scans(self) -> list[ScanPayload]:
        return [p for _, p in self.events if isinstance(p, ScanPayload)]

    def texts(self) -> list[str]:
        return [p.text for p in self.scans()]

    def statuses(self) -> list[tuple[str, str]]:
        return [(p.state, p.condition) for p in self.status_payloads()]

    def status_payloads(self) -> list[DeviceStatusPayload]:
        return [p for _, p in self.events if isinstance(p, DeviceStatusPayload)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; statuses {self.statuses()}, texts {self.texts()}")
            await asyncio.sleep(0.005)

    async def connected(self, count: int = 1) -> None:
        await self.wait_for(lambda: self.statuses().count(("online", "connected")) >= count)


@contextlib.asynccontextmanager
async def running(driver: Driver) -> AsyncIterator["asyncio.Task[None]"]:
    """Run the driver for the block, then stop it as the agent does (cancel) and check it did."""
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert driver.health().condition == "stopped"
