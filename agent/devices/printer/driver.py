"""ESC/POS printer driver: one protocol class over TCP or serial, draining a durable job queue."""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import AgentSection, SerialPrinterConfig, TcpPrinterConfig
from agent.devices.base import EventSink
from agent.devices.printer import escpos, templates
from agent.devices.printer.errors import StatusError
from agent.devices.printer.jobs import JobLedger
from agent.devices.printer.link import Link, LinkLost, SerialLink, TcpLink
from agent.devices.printer.queue import QUEUE_FILE, Job
from agent.devices.printer.session import PrinterSession
from agent.devices.printer.status import CONDITIONS, Junk, PrinterStatus
from agent.devices.states import DeviceState, DeviceStateMachine, Signal, backoff_delay
from agent.liveness import Pulse
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

# Reconnect backoff: exponential with jitter. A printer switched off for the night is retried
# every 30 s; one that flaps (odoo_upos.md §4 #9) is not hammered.
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
RECONNECT_FACTOR = 2.0
RECONNECT_STABLE_S = 10.0  # connected this long, the next loss starts the backoff afresh
# A silent peer is only noticed by asking (devices.md §4.4): this many unanswered status polls
# in a row and the connection is dropped and reopened.
MISSED_POLLS_LOST = 2
ASB_ALL = 0x0F  # GS a n: drawer, online/offline, error and paper changes (devices.md §2.3)
NOT_PRINTED_NO_START = (
    "not printed: the printer never answered the start marker; "
    'set confirm = "status" if it lacks GS ( H'
)


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds before reconnect number `attempt` (0-based): exponential, capped, jittered."""
    return backoff_delay(attempt, rng, RECONNECT_INITIAL_S, RECONNECT_MAX_S, RECONNECT_FACTOR)


class _Unconfirmed(Exception):
    """The printer never confirmed a job it was sent: the job's fate is unknown."""


class EscPosPrinter:
    """The printer protocol over any Link; `submit` queues durably, `run` prints in order."""

    kind = "printer"

    def __init__(
        self,
        config: TcpPrinterConfig | SerialPrinterConfig,
        sink: EventSink,
        *,
        state_dir: Path | None = None,
    ) -> None:
        self.device_id = config.id
        self._config = config
        self._sink = sink
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self._machine = DeviceStateMachine(self.device_id, sink)
        self._announced = False  # this session said "connected" already
        self._misses = 0
        self._counters = dict.fromkeys(
            ("jobs_printed", "jobs_failed", "jobs_queued", "status_polls", "status_junk",
             "reconnects", "bytes_sent"), 0
        )  # fmt: skip
        queue_path = _state_dir(sink, state_dir) / QUEUE_FILE
        self.jobs = JobLedger(self.device_id, queue_path, sink, self._counters,
                              config.max_job_bytes)  # fmt: skip
        self._running = False
        self.pulse = Pulse(self.device_id)

    async def submit(self, job_id: str, template: str, data: bytes) -> Job:
        """Queue `data` durably under `job_id` and return it; the same job_id again is a no-op.

        ValueError for a job_id/template the wire cannot carry; data that cannot be a job
        (empty, over max_job_bytes) is stored as failed and print.failed is emitted at once.
        """
        job, new = await self.jobs.submit(job_id, template, data)
        if new:
            self._wake.set()
        return job

    async def submit_template(self, job_id: str, template: str, fields: Mapping[str, Any]) -> Job:
        """Render `template` (templates.TEMPLATES) and submit it; bad data → print.failed."""
        job, new = await self.jobs.submit_template(job_id, template, fields)
        if new:
            self._wake.set()
        return job

    def health(self) -> DeviceHealth:
        """State, condition and counters as of now."""
        return DeviceHealth(
            device_id=self.device_id, kind=self.kind, state=self._machine.state.value,
            condition=self._machine.condition, detail=self._machine.detail,
            counters=dict(self._counters),
        )  # fmt: skip

    async def run(self) -> None:
        """Connect, poll and print until cancelled; raises only if the queue or outbox fails."""
        if self._running:
            raise RuntimeError(f"{self.device_id}: run() is already running")
        self._running = True
        self._machine.start()
        try:
            self.pulse.beat()
            await self.jobs.recover()
            attempt = 0
            while True:
                opened_at = time.monotonic()
                self.pulse.beat(getattr(self._config, "connect_timeout_s", 0.0))
                try:
                    await self._connect_and_serve()
                except LinkLost as exc:
                    signal = Signal.LOST if self._announced else Signal.OPEN_FAILED
                    await self._machine.fire(signal, str(exc))
                if time.monotonic() - opened_at >= RECONNECT_STABLE_S:
                    attempt = 0
                delay = reconnect_delay(attempt, self._rng)
                self.pulse.beat(delay)
                await asyncio.sleep(delay)
                attempt += 1
        finally:
            self.pulse.park()
            self._machine.stop()
            self._running = False
            await self.aclose()

    async def aclose(self) -> None:
        """Close the queue file (reopened by the next submit or run)."""
        await self.jobs.close()

    async def _open_link(self) -> Link:
        raise NotImplementedError

    # --- connection -------------------------------------------------------------------------

    async def _connect_and_serve(self) -> None:
        self._announced, self._misses = False, 0
        link = await self._open_link()
        session = PrinterSession(link, on_asb=lambda _: self._wake.set(), on_junk=self._junk)
        try:
            if self._config.asb:
                await session.send(escpos.asb(ASB_ALL))
            while True:
                status = await self._poll(session)
                job = None
                if status is not None and status.can_print:
                    job = await self.jobs.next_queued()
                if job is not None:
                    await self._print(session, job)
                    continue
                await self._idle(self._config.poll_interval_s)
        finally:
            await session.close()

    async def _poll(self, session: PrinterSession) -> PrinterStatus | None:
        """One status poll, applied; None if the answer was junk or missing."""
        self._counters["status_polls"] += 1
        self.pulse.beat(self._config.status_timeout_s)
        try:
            status = await session.poll(self._config.status_timeout_s)
        except StatusError as exc:
            self._misses = 0
            await self._announce(session)
            await self._machine.fire(Signal.FAULT, str(exc), "status_junk")
            return None
        except TimeoutError:
            self._misses += 1
            if self._misses >= MISSED_POLLS_LOST:
                raise LinkLost(f"no answer to {self._misses} status requests in a row") from None
            return None
        self._misses = 0
        await self._announce(session)
        if status.condition == "ok":
            await self._machine.fire(Signal.CLEARED, None, "recovered")
        else:
            flags = [name for flag, name, _ in CONDITIONS if getattr(status, flag)]
            await self._machine.fire(Signal.FAULT, ", ".join(flags), status.condition)
        return status

    async def _announce(self, session: PrinterSession) -> None:
        if self._announced:
            return
        self._announced = True
        if self._machine.state is DeviceState.OFFLINE:
            self._counters["reconnects"] += 1
        await self._machine.fire(Signal.OPENED, session.link.describe)

    def _junk(self, item: Junk) -> None:
        self._counters["status_junk"] += 1
        log.warning("%s: status junk %s (%s)", self.device_id, item.data.hex(" "), item.reason)

    async def _idle(self, seconds: float) -> None:
        self.pulse.beat(seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    # --- jobs -------------------------------------------------------------------------------

    async def _print(self, session: PrinterSession, job: Job) -> None:
        """Send one job and decide its fate from the printer's answers (docs/PRINTERS.md)."""
        job = await self.jobs.start(job)  # committed before the start marker leaves
        by_id = self._config.confirm == "process_id"
        if by_id:
            # Stop-and-wait on a start marker: until the printer answers it, not one byte of
            # the job has left, so any failure here is certain to have printed nothing.
            try:
                await self._marker(session)
            except LinkLost as exc:
                await self.jobs.unsent(job, f"link lost before the start was confirmed: {exc}")
                raise
            except _Unconfirmed as exc:
                await self.jobs.failed(job, f"{NOT_PRINTED_NO_START} ({exc})")
                return
        job = await self.jobs.sent(job)  # committed before the job's first byte leaves
        data = templates.copy_banner() + job.data if job.reprint else job.data
        try:
            self.pulse.beat(self._config.write_timeout_s)
            if by_id:
                await self._marker(session, data)
            else:
                await session.send(data)
                await self._confirm(session, None)
        except LinkLost as exc:
            await self.jobs.uncertain(job, f"link lost after the job was sent: {exc}")
            raise
        except _Unconfirmed as exc:
            await self.jobs.uncertain(job, f"sent, then {exc}")
            return
        finally:
            self._counters["bytes_sent"] += len(data)
        await self.jobs.done(job)

    async def _marker(self, session: PrinterSession, data: bytes = b"") -> None:
        """Send `data` and a GS ( H process-ID marker; return once the printer answers it."""
        pid = bytes(self._rng.randrange(0x30, 0x7F) for _ in range(4))  # GS ( H: 30h–7Eh
        done = session.expect_done(pid)  # registered first, so a fast answer is not missed
        await session.send(data + escpos.process_id(pid))
        await self._confirm(session, done)

    async def _confirm(self, session: PrinterSession, done: "asyncio.Future[bool] | None") -> None:
        """Wait for the job's confirmation; the clock stops while the printer says it holds it."""
        budget = self._config.confirm_timeout_s
        held = False  # paper out, cover open…: the job waits in the printer's buffer
        first = True
        while True:
            started = time.monotonic()
            wait_s = min(self._config.poll_interval_s, max(budget, 0.0))
            self.pulse.beat(wait_s)
            if done is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await asyncio.shield(done)
                if done.done():
                    if not done.result():
                        raise session.lost or LinkLost("link lost")
                    return
            elif not first:
                await asyncio.sleep(wait_s)
            first = False
            if not held:
                budget -= time.monotonic() - started
            status = await self._poll(session)  # device.status shows why a job is held
            held = status is not None and not status.can_print
            if done is None and status is not None and status.can_print:
                return  # "status" mode: online and without fault after the data went out
            if budget <= 0:
                raise _Unconfirmed(f"no confirmation within {self._config.confirm_timeout_s:g} s")


class TcpPrinter(EscPosPrinter):
    """An ESC/POS printer on raw TCP, port 9100 by default."""

    def __init__(
        self, config: TcpPrinterConfig, sink: EventSink, *, state_dir: Path | None = None
    ) -> None:
        super().__init__(config, sink, state_dir=state_dir)
        self._tcp = config

    async def _open_link(self) -> Link:
        return await TcpLink.open(self._tcp.host, self._tcp.port, self._tcp.connect_timeout_s)


class SerialPrinter(EscPosPrinter):
    """An ESC/POS printer on a serial port (or a USB-serial adapter)."""

    def __init__(
        self, config: SerialPrinterConfig, sink: EventSink, *, state_dir: Path | None = None
    ) -> None:
        super().__init__(config, sink, state_dir=state_dir)
        self._serial = config

    async def _open_link(self) -> Link:
        return await SerialLink.open(self._serial)


def _state_dir(sink: EventSink, state_dir: Path | None) -> Path:
    """Where printqueue.db lives: given, else beside the outbox (the state dir), else default."""
    if state_dir is not None:
        return Path(state_dir)
    outbox_path = getattr(sink, "path", None)
    if isinstance(outbox_path, Path):
        return outbox_path.parent
    return AgentSection().state_dir
