"""test-print and test-scan: through the running agent's drivers, or standalone when it is not up.

Standalone, the same driver classes run against a sink that keeps events in memory, so the
engineer sees exactly what the agent would record, but nothing is written to the outbox.
"""

import asyncio
import contextlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.devices.base import Payload
from agent.devices.registry import DeviceContext, build_driver
from agent.diagnostics.testpage import TEMPLATE, job_id_for, render_test_page
from agent.errors import AgentError
from agent.recent import RecentEvents, SeenScan
from protocol.events import DeviceStatusPayload
from protocol.printing import PrintCompletedPayload

# How long a test print may take from submit to the printer's confirmation.
PRINT_TIMEOUT_S = 45.0


class DeviceTestError(AgentError):
    """The device named cannot be tested (unknown, wrong kind, or it did not answer)."""


def device_config(config: AgentConfig, device_id: str, kind: str) -> Any:
    """The `[[devices]]` entry `device_id`, which must be of `kind`."""
    for device in config.devices:
        if device.id == device_id:
            if device.kind != kind:
                raise DeviceTestError(f"{device_id} is a {device.kind}, not a {kind}")
            return device
    known = ", ".join(d.id for d in config.devices if d.kind == kind) or "none configured"
    raise DeviceTestError(f"no {kind} {device_id!r} in the config (known: {known})")


def print_outcome(payload: Payload | None, job_id: str) -> dict[str, Any]:
    """The JSON answer of a test print."""
    if payload is None:
        return {
            "status": "queued",
            "job_id": job_id,
            "detail": "not confirmed yet: the page prints when the printer can",
        }
    if isinstance(payload, PrintCompletedPayload):
        return {"status": "completed", "job_id": job_id, "detail": "printed and confirmed"}
    return {"status": "failed", "job_id": job_id, "detail": getattr(payload, "reason", "")}


async def print_via_driver(
    driver: Any, recent: RecentEvents, store_id: str | None, timeout_s: float = PRINT_TIMEOUT_S
) -> dict[str, Any]:
    """Queue a test page on a running printer driver and wait for its outcome."""
    job_id = job_id_for(driver.device_id)
    outcome = recent.expect_print(job_id)
    try:
        await driver.submit(job_id, TEMPLATE, render_test_page(driver.device_id, store_id))
        async with asyncio.timeout(timeout_s):
            return print_outcome(await outcome, job_id)
    except TimeoutError:
        return print_outcome(None, job_id)
    finally:
        recent.forget_print(job_id)


class _MemorySink:
    """EventSink for standalone tests: events go to `recent` and a list, never to disk."""

    def __init__(self, recent: RecentEvents) -> None:
        self.recent = recent
        self.statuses: list[DeviceStatusPayload] = []

    async def capture(
        self,
        device_id: str,
        payload: Payload,
        occurred_at: datetime | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        del idempotency_key  # kept in memory only: nothing to deduplicate against
        if isinstance(payload, DeviceStatusPayload):
            self.statuses.append(payload)
        self.recent.record(device_id, payload, occurred_at or datetime.now(UTC))

    async def count_loss(self, reason: str, count: int = 1) -> None:
        del reason, count


async def standalone_print(config: AgentConfig, device_id: str) -> dict[str, Any]:
    """Open the printer ourselves (the agent is not running) and print one test page."""
    device = device_config(config, device_id, "printer")
    recent = RecentEvents()
    sink = _MemorySink(recent)
    with tempfile.TemporaryDirectory(prefix="storeedge-test-print-") as tmp:
        driver = build_driver(device, sink, DeviceContext(state_dir=Path(tmp)))
        task = asyncio.create_task(driver.run())
        try:
            result = await print_via_driver(driver, recent, None)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if result["status"] == "queued" and sink.statuses:
        last = sink.statuses[-1]
        result["detail"] = f"printer {last.state} ({last.condition}): {last.detail or ''}".strip()
    return result


async def standalone_scan(config: AgentConfig, device_id: str, timeout_s: float) -> SeenScan:
    """Open the scanner ourselves and return its next scan; DeviceTestError if none comes."""
    device = device_config(config, device_id, "scanner")
    recent = RecentEvents()
    sink = _MemorySink(recent)
    driver = build_driver(device, sink, DeviceContext(scan=config.scan))
    task = asyncio.create_task(driver.run())
    try:
        return await recent.next_scan(device_id, timeout_s)
    except TimeoutError:
        why = ""
        if sink.statuses:
            last = sink.statuses[-1]
            why = f"; scanner {last.state} ({last.condition}): {last.detail or ''}"
        raise DeviceTestError(f"no scan from {device_id} within {timeout_s:g} s{why}") from None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
