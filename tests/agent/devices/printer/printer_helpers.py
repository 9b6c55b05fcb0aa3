"""Helpers for printer tests: a recording EventSink and a way to run a driver for a block."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest

from agent.devices.base import Payload
from agent.devices.printer.driver import EscPosPrinter
from protocol.events import DeviceStatusPayload
from protocol.printing import PrintCompletedPayload, PrintFailedPayload


class RecordingSink:
    """In-memory EventSink: remembers every captured payload in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Payload]] = []
        self.losses: dict[str, int] = {}
        self.keys: list[str | None] = []

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        assert occurred_at is not None
        self.events.append((device_id, payload))
        self.keys.append(idempotency_key)

    async def count_loss(self, reason: str, count: int = 1) -> None:
        self.losses[reason] = self.losses.get(reason, 0) + count

    def statuses(self) -> list[tuple[str, str]]:
        return [
            (p.state, p.condition) for _, p in self.events if isinstance(p, DeviceStatusPayload)
        ]

    def completed(self) -> list[str]:
        return [p.job_id for _, p in self.events if isinstance(p, PrintCompletedPayload)]

    def outcomes(self) -> list[PrintCompletedPayload]:
        return [p for _, p in self.events if isinstance(p, PrintCompletedPayload)]

    def failed(self) -> dict[str, str]:
        return {p.job_id: p.reason for _, p in self.events if isinstance(p, PrintFailedPayload)}

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out; statuses {self.statuses()}, "
                    f"completed {self.completed()}, failed {self.failed()}"
                )
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(driver: EscPosPrinter) -> AsyncIterator["asyncio.Task[None]"]:
    """Run the driver for the block, then stop it as the agent would (cancel)."""
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.aclose()
