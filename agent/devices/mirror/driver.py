"""Smart-mirror driver: find the mirror, follow its /events stream, record each event durably."""

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from agent.config import MirrorConfig
from agent.devices.base import EventSink
from agent.devices.mirror.client import REQUEST_TIMEOUT_S, EventSocket, MirrorClient
from agent.devices.mirror.cursor import Cursor, cursor_path, load_cursor, save_cursor
from agent.devices.mirror.discovery import MirrorAddress, MirrorDiscovery
from agent.devices.mirror.errors import MirrorError, MirrorProtocolError, MirrorUnavailableError
from agent.devices.mirror.records import RECORDINGS, occurred_at
from agent.devices.mirror.stream import SKIP_REASONS, MirrorStream
from agent.devices.scanner.flood import FloodGuard
from agent.devices.states import DeviceStateMachine, Signal, backoff_delay
from agent.liveness import Pulse
from protocol.mirror_api import (
    SERVICE_TYPE,
    SUPPORTED_API_VERSIONS,
    DisplayAck,
    DisplayRequest,
    MirrorEvent,
)
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

# Resubscribe backoff: exponential with jitter, cut short when mDNS shows the mirror moved.
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
RECONNECT_FACTOR = 2.0
RECONNECT_STABLE_S = 30.0  # subscribed this long, the next drop starts the backoff afresh
# Browse this long before calling a mirror not_found: the browser's startup queries go out
# within the first ~1 s (RFC 6762 §5.2), answers come within ~120 ms of each.
DISCOVERY_TIMEOUT_S = 5.0
TICK_S = 0.5  # an idle stream wakes this often to end a flood and flush counters
# Shoppers make an event every few seconds; an RFID pile entering a fitting room is a burst of
# tens. Past this a mirror is looping: droppable events are shed and counted.
FLOOD_RATE_PER_S = 20.0
FLOOD_BURST = 100
FLOOD_CALM_S = 2.0
LOSS_FLUSH_S = 1.0  # flood/gap losses reach the outbox at most this often (one write each)
CURSOR_SAVE_S = 1.0  # a cursor moved only by skips and drops is saved at most this often


COUNTERS = (
    "messages", "recorded", *SKIP_REASONS, "gap_lost", "flood_dropped", "clock_skew",
    "cursor_errors", "subscriptions", "reconnects", "displays", "display_failures",
)  # fmt: skip


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds before resubscribe number `attempt` (0-based): exponential, capped, jittered."""
    return backoff_delay(attempt, rng, RECONNECT_INITIAL_S, RECONNECT_MAX_S, RECONNECT_FACTOR)


class MirrorDriver:
    """Driver for one smart mirror; `run` until cancelled, never raises on mirror faults."""

    kind = "mirror"

    def __init__(
        self,
        config: MirrorConfig,
        sink: EventSink,
        *,
        state_dir: Path | None = None,
        zeroconf: AsyncZeroconf | None = None,
        service_type: str = SERVICE_TYPE,
    ) -> None:
        self.device_id = config.id
        self.mirror_id = config.mirror_id or config.id
        self._config, self._sink = config, sink
        # Without a state dir the cursor lives in memory: an agent restart replays the backlog.
        self._cursor_file = cursor_path(state_dir, config.id) if state_dir is not None else None
        self._zeroconf, self._service_type = zeroconf, service_type
        self._stream: MirrorStream | None = None
        self._saved: Cursor | None = None
        self._saving: asyncio.Future[None] | None = None  # the cursor write in its thread
        self._guard = FloodGuard(FLOOD_RATE_PER_S, FLOOD_BURST, FLOOD_CALM_S)
        self._rng = random.Random()
        self._machine = DeviceStateMachine(self.device_id, sink)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._losses: Counter[str] = Counter()
        self._losses_flushed_at = self._cursor_saved_at = 0.0
        self._client: MirrorClient | None = None
        self._discovery: MirrorDiscovery | None = None
        self._address: MirrorAddress | None = None  # where the last stream was subscribed
        self._running = False
        self.pulse = Pulse(self.device_id)

    async def run(self) -> None:
        """Follow the mirror until cancelled; re-raises only a sink failure (the outbox's)."""
        if self._running:
            raise RuntimeError(f"{self.device_id}: run() is already running")
        self._running = True
        self._machine.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                session = await stack.enter_async_context(aiohttp.ClientSession())
                self._client = MirrorClient(session)
                if self._config.transport == "mdns":
                    zc = self._zeroconf or self._own_zeroconf(stack)
                    self._discovery = MirrorDiscovery(zc, self._service_type)
                    await stack.enter_async_context(self._discovery)
                if self._stream is None:  # first run: the file; later runs keep memory's
                    cursor = None
                    if self._cursor_file is not None:
                        cursor = await asyncio.to_thread(load_cursor, self._cursor_file)
                    self._stream = MirrorStream(self.mirror_id, cursor)
                    self._saved = self._stream.cursor
                await self._serve()
        finally:
            self._client, self._discovery = None, None
            try:
                await self._flush(time.monotonic(), force=True)
            except Exception:  # the outbox is gone too: nothing left to tell it
                log.exception("%s: could not flush counters on stop", self.device_id)
            self._machine.stop()
            self._running = False
            self.pulse.park()

    def health(self) -> DeviceHealth:
        """State, condition and counters as of now."""
        return DeviceHealth(
            device_id=self.device_id, kind=self.kind, state=self._machine.state.value,
            condition=self._machine.condition, detail=self._machine.detail,
            counters=dict(self._counters),
        )  # fmt: skip

    async def display(self, request: DisplayRequest) -> DisplayAck:
        """Show a coupon QR or a message on the mirror; raises MirrorError (see errors.py)."""
        client = self._client
        address = self._discovery.lookup(self.mirror_id) if self._discovery else None
        address = address or self._address
        if client is None or address is None:
            raise MirrorUnavailableError(f"{self.device_id}: mirror {self.mirror_id} not reachable")
        try:
            ack = await client.display(address, request)
        except MirrorError:
            self._counters["display_failures"] += 1
            raise
        self._counters["displays"] += 1
        return ack

    # --- connection loop ---------------------------------------------------------------

    async def _serve(self) -> None:
        attempt = 0
        while True:
            self.pulse.beat(DISCOVERY_TIMEOUT_S)
            address = await self._locate()
            if address is None:
                await self._fire(Signal.NOT_FOUND, f"{self.mirror_id} not announced on mDNS")
            else:
                started = time.monotonic()
                try:
                    await self._follow(address)
                except MirrorError as exc:
                    await self._fire(Signal.LOST, f"{address.url}: {exc}")
                await self._flush(time.monotonic(), force=True)
                if time.monotonic() - started >= RECONNECT_STABLE_S:
                    attempt = 0
            await self._pause(reconnect_delay(attempt, self._rng), address)
            attempt += 1

    async def _locate(self) -> MirrorAddress | None:
        if self._discovery is None:  # transport "http": config validation ensured both
            assert self._config.host is not None
            assert self._config.port is not None
            return MirrorAddress(self._config.host, self._config.port)
        return await self._discovery.wait_for(self.mirror_id, DISCOVERY_TIMEOUT_S)

    async def _pause(self, delay: float, address: MirrorAddress | None) -> None:
        self.pulse.beat(delay)
        if self._discovery is None:
            await asyncio.sleep(delay)
        else:  # a mirror announced again (rebooted, moved, new lease) is retried at once
            await self._discovery.wait_for(self.mirror_id, delay, newer_than=address)

    async def _follow(self, address: MirrorAddress) -> None:
        """Subscribe at `address` and record until the stream ends (raises MirrorError)."""
        assert self._client is not None
        assert self._stream is not None
        self.pulse.beat(2 * REQUEST_TIMEOUT_S)  # /info, then the subscription
        info = await self._client.info(address)
        if info.id != self.mirror_id:
            raise MirrorProtocolError(f"this is mirror {info.id!r}, not {self.mirror_id!r}")
        if info.api_version not in SUPPORTED_API_VERSIONS:
            raise MirrorProtocolError(f"mirror API version {info.api_version} not supported")
        socket = await self._client.subscribe(address, self._stream.subscribe_params())
        try:
            while True:
                self.pulse.beat(TICK_S)
                try:
                    frame = await socket.receive(TICK_S)
                except TimeoutError:
                    frame = ""
                if frame is None:
                    raise MirrorUnavailableError(socket.close_reason)
                if frame:
                    await self._handle(frame, socket, address, f"{info.model} {info.firmware}")
                await self._tick()
        finally:
            await socket.close()

    async def _handle(
        self, frame: str | bytes, socket: EventSocket, address: MirrorAddress, model: str
    ) -> None:
        assert self._stream is not None
        self._counters["messages"] += 1
        step = self._stream.receive(frame)
        if step.skipped:
            self._counters[step.skipped] += 1
        if step.lost:
            self._counters["gap_lost"] += step.lost
            self._losses["mirror_gap"] += step.lost
        if step.hello is not None:
            self._address = address
            self._counters["subscriptions"] += 1
            self._counters["reconnects"] = self._counters["subscriptions"] - 1
            await self._fire(Signal.OPENED, f"{model} at {address.url}")
        if step.event is not None:
            await self._record(step.event, socket)

    async def _record(self, event: MirrorEvent, socket: EventSocket) -> None:
        assert self._stream is not None
        recording = RECORDINGS[event.type]
        if recording.droppable and not self._guard.admit(time.monotonic()):
            self._counters["flood_dropped"] += 1
            self._losses["mirror_flood"] += 1
            self._stream.commit(event.counter)  # shed on purpose: never asked for again
            detail = f"over {FLOOD_RATE_PER_S:g} events/s, dropping"
            await self._fire(Signal.FAULT, detail, "flooding")
            return
        now = datetime.now(UTC)
        when = occurred_at(event.at, now)
        if when is None:
            self._counters["clock_skew"] += 1
        # DESIGN guarantee 1: durable in the outbox before the cursor moves or the mirror
        # hears an ack. A crash between the two replays this one event (a duplicate).
        await self._sink.capture(self.device_id, recording.to_payload(event), when or now)
        ack = self._stream.commit(event.counter)
        self._counters["recorded"] += 1
        await self._save_cursor()
        await socket.send(ack)

    # --- bookkeeping -------------------------------------------------------------------

    async def _tick(self) -> None:
        now = time.monotonic()
        if self._guard.calmed(now):
            detail = f"dropped {self._guard.dropped_since_flood} events"
            await self._fire(Signal.CLEARED, detail, "flood_ended")
        await self._flush(now)

    async def _flush(self, now: float, force: bool = False) -> None:
        """Persist loss counts and a cursor moved by skips, at most every few seconds."""
        if self._losses and (force or now - self._losses_flushed_at >= LOSS_FLUSH_S):
            losses, self._losses = self._losses, Counter()
            self._losses_flushed_at = now
            for reason, count in losses.items():
                await self._sink.count_loss(reason, count)
        if force or now - self._cursor_saved_at >= CURSOR_SAVE_S:
            await self._save_cursor()

    async def _save_cursor(self) -> None:
        cursor = self._stream.cursor if self._stream is not None else None
        if self._cursor_file is None or cursor is None or cursor == self._saved:
            return
        # A write cut short by cancellation goes on in its thread: let it end before the next,
        # so two never race on the temp file and an older cursor never lands last.
        if self._saving is not None and not self._saving.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._saving)
        self._saving = asyncio.ensure_future(
            asyncio.to_thread(save_cursor, self._cursor_file, cursor)
        )
        try:
            await asyncio.shield(self._saving)
        except OSError as exc:  # keep recording: the cost is duplicates after an agent restart
            self._counters["cursor_errors"] += 1
            log.warning("%s: cannot save the stream cursor: %s", self.device_id, exc)
            return
        self._saved, self._cursor_saved_at = cursor, time.monotonic()

    async def _fire(self, signal: Signal, detail: str, condition: str | None = None) -> None:
        """Apply one signal; device.status only when state or condition changes."""
        await self._machine.fire(signal, detail, condition)

    def _own_zeroconf(self, stack: contextlib.AsyncExitStack) -> AsyncZeroconf:
        interfaces = self._config.mdns_interfaces or InterfaceChoice.All
        zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        stack.push_async_callback(zc.async_close)
        return zc
