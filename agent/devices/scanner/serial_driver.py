"""Serial scanner driver: one reader thread per port, each frame durable before the next one."""

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import random
import termios
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import serial

from agent.config import ScanSection, SerialScannerConfig
from agent.devices.base import EventSink, Payload
from agent.devices.scanner.decode import MAX_RAW_BYTES, decode_frame
from agent.devices.scanner.flood import FloodGuard
from agent.devices.scanner.framer import Frame, ScanFramer
from agent.errors import DeviceError
from agent.liveness import Pulse
from protocol.events import DeviceStatusPayload, ScanPayload
from protocol.wire import DeviceHealth

log = logging.getLogger(__name__)

# Reopen backoff: exponential with jitter. A pty or USB-CDC port reappears within ~1 s of a
# replug (devices.md §4.4 saw 50 ms → 1 s work); 5 s caps the wait for one left unplugged.
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0
RECONNECT_FACTOR = 2.0
RECONNECT_STABLE_S = 10.0  # connected this long, the next loss starts the backoff afresh
# How often a blocked read wakes to check the stop flag and the framer's idle deadline.
READ_TIMEOUT_S = 0.05
# A person scans a few codes a second; a stuck trigger or a scanner echoing a loop sends far
# more. Past this the excess is dropped and counted, and the device is "degraded".
FLOOD_RATE_PER_S = 50.0
FLOOD_BURST = 200
FLOOD_CALM_S = 2.0  # no drop for this long ends the flood
# On shutdown, an event already handed to the sink gets this long to commit.
STOP_GRACE_S = 5.0
# Flood drops are persisted as outbox loss counters at most this often (one fsync, not one
# per dropped frame), and always when the flood ends or the reader stops.
LOSS_FLUSH_S = 1.0
_WAIT_SLICE_S = 0.1
_DETAIL_LEN = 512  # DeviceStatusPayload.detail max_length

# pyserial raises SerialException (an OSError); termios.error is not one.
_PORT_ERRORS = (OSError, termios.error)


class ConnState(StrEnum):
    """Where the reader is; `degraded` means connected but dropping a flood."""

    CONNECTING = "connecting"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


# (state, what happened) → (new state, condition). Pairs not listed change nothing, so a
# port that keeps failing to open emits one "disconnected", not one per retry.
TRANSITIONS: dict[tuple[ConnState, str], tuple[ConnState, str]] = {
    (ConnState.CONNECTING, "opened"): (ConnState.ONLINE, "connected"),
    (ConnState.CONNECTING, "open_failed"): (ConnState.OFFLINE, "disconnected"),
    (ConnState.OFFLINE, "opened"): (ConnState.ONLINE, "connected"),
    (ConnState.ONLINE, "lost"): (ConnState.OFFLINE, "disconnected"),
    (ConnState.ONLINE, "flooding"): (ConnState.DEGRADED, "flooding"),
    (ConnState.DEGRADED, "calm"): (ConnState.ONLINE, "flood_ended"),
    (ConnState.DEGRADED, "lost"): (ConnState.OFFLINE, "disconnected"),
}


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before reopen number `attempt` (0-based): exponential, capped, jittered."""
    ceiling = min(RECONNECT_MAX_S, RECONNECT_INITIAL_S * RECONNECT_FACTOR ** min(attempt, 32))
    return ceiling * rng.uniform(0.5, 1.0)  # jitter so a rack of agents does not retry in step


class _Stopped(Exception):
    """The reader must end now (stop requested past grace, loop gone, or sink failed)."""


class SerialScanner:
    """Driver for a scanner on a serial port; `run` until cancelled, never raises on faults."""

    kind = "scanner"

    def __init__(
        self, config: SerialScannerConfig, sink: EventSink, *, scan: ScanSection | None = None
    ) -> None:
        self.device_id = config.id
        self._config = config
        self._sink = sink
        self._scan = scan or ScanSection()  # [scan]: routes scans the same for every driver
        self._framer = ScanFramer(
            [t.encode("utf-8") for t in config.terminators],
            config.idle_timeout_ms / 1000,
            config.max_frame_bytes,
        )
        self._flood_rate = config.flood_max_per_s or FLOOD_RATE_PER_S
        self._guard = FloodGuard(
            self._flood_rate,
            config.flood_burst or FLOOD_BURST,
            FLOOD_CALM_S,
        )
        self._rng = random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = ConnState.CONNECTING
        self._condition = ""
        self._detail: str | None = None
        # frames: all the framer produced (flood drops included); bytes: all read.
        self._counters = dict.fromkeys(
            ("frames", "bytes", "decode_errors", "unrecognised", "flood_dropped", "reconnects"), 0
        )
        self._error: BaseException | None = None
        self._running = False
        self._unpersisted_drops = 0
        self._drops_flushed_at = 0.0
        self.pulse = Pulse(self.device_id)  # beaten by the reader thread; read by the watchdog

    def apply_scan(self, scan: ScanSection) -> None:
        """Route later scans with `scan` (remote config); the port stays open."""
        self._scan = scan  # one reference swap: the reader thread sees old or new rules

    async def run(self) -> None:
        """Read until cancelled; re-raises only a sink failure (the outbox, not the device)."""
        if self._running:
            raise RuntimeError(f"{self.device_id}: run() is already running")
        self._running, self._error = True, None
        self._stop.clear()
        with self._lock:
            self._state = ConnState.CONNECTING
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._thread_main, args=(loop, done), name=f"scanner:{self.device_id}"
        )
        thread.daemon = True  # a wedged read must never keep the process alive
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            self._stop.set()
            # The thread may be waiting on a capture, which needs this loop: await, never join.
            if not done.done():
                await asyncio.shield(done)
            thread.join()
            with self._lock:
                self._state, self._condition, self._detail = ConnState.OFFLINE, "stopped", None
            self._running = False
            self.pulse.park()
        if self._error is not None:
            raise self._error

    def health(self) -> DeviceHealth:
        """State, condition and counters as of now; safe to call from the loop at any time."""
        with self._lock:
            state, condition, detail = self._state, self._condition, self._detail
            counters = {**self._counters, **self._framer.counters}
        return DeviceHealth(
            device_id=self.device_id, kind=self.kind, state=state.value, condition=condition,
            detail=detail, counters=counters,
        )  # fmt: skip

    # --- reader thread -------------------------------------------------------------------

    def _thread_main(self, loop: asyncio.AbstractEventLoop, done: "asyncio.Future[None]") -> None:
        try:
            self._serve(loop)
        except _Stopped:
            pass
        except Exception as exc:  # a bug here must end run(), not vanish with the thread
            log.exception("%s: reader thread crashed", self.device_id)
            self._error = DeviceError(f"{self.device_id}: reader crashed: {exc}")
        finally:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, done)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.pulse.beat()
            port = self._open(loop)
            if port is not None:
                opened_at = time.monotonic()
                try:
                    self._read_until_lost(port, loop)
                finally:
                    _close_quietly(port)
                # Only a connection that held resets the backoff: a port that opens and
                # fails at once (flaky cable, another reader) must not spin or flood events.
                if time.monotonic() - opened_at >= RECONNECT_STABLE_S:
                    attempt = 0
            delay = reconnect_delay(attempt, self._rng)
            self.pulse.beat(delay)
            self._stop.wait(delay)
            attempt += 1

    def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        c = self._config
        try:
            port = serial.Serial(
                port=c.port,
                baudrate=c.baudrate,
                bytesize=c.bytesize,
                parity=c.parity,
                stopbits=c.stopbits,
                timeout=READ_TIMEOUT_S,
                # Scanners are receive-only ASCII sources with no flow control (devices.md §1.1).
                # pyserial already tolerates ENOTTY when it sets DTR/RTS on a pty (§4.2).
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                # flock: a second agent on the same port would steal half of every frame.
                exclusive=True,
            )
        except (*_PORT_ERRORS, ValueError) as exc:  # ValueError: settings the port refuses
            self._fire("open_failed", str(exc), loop)
            return None
        with self._lock:
            recovering = self._state is ConnState.OFFLINE
        if recovering:
            self._counters["reconnects"] += 1
        self._fire("opened", f"{c.port} at {c.baudrate} baud", loop)
        return port

    def _read_until_lost(self, port: Any, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            self.pulse.beat(READ_TIMEOUT_S)  # a capture stuck on the outbox breaks this
            try:
                # Block for one byte (up to READ_TIMEOUT_S), then take whatever else is there.
                data: bytes = port.read(port.in_waiting or 1)
            except _PORT_ERRORS as exc:  # unplug: EIO or "readiness to read but no data"
                self._handle(self._framer.flush(), time.monotonic(), loop)
                self._fire("lost", str(exc), loop)
                return
            now = time.monotonic()
            self._counters["bytes"] += len(data)
            self._handle(
                self._framer.feed(data, now) if data else self._framer.poll(now), now, loop
            )
            if self._guard.calmed(now):
                self._persist_drops(loop, now, force=True)
                self._fire("calm", f"dropped {self._guard.dropped_since_flood} frames", loop)
        # Stopping: what was read is not lost on the way out.
        self._handle(self._framer.flush(), time.monotonic(), loop)
        self._persist_drops(loop, time.monotonic(), force=True)

    def _handle(self, frames: list[Frame], now: float, loop: asyncio.AbstractEventLoop) -> None:
        for frame in frames:
            self._counters["frames"] += 1
            if not self._guard.admit(now):
                self._counters["flood_dropped"] += 1
                self._unpersisted_drops += 1
                self._fire("flooding", f"over {self._flood_rate:g} frames/s, dropping", loop)
                self._persist_drops(loop, now)
                continue
            payload = _decode(frame, self._scan)
            if payload.decode_error:
                self._counters["decode_errors"] += 1
            if payload.classification == "unrecognised":
                self._counters["unrecognised"] += 1
            self._capture(payload, loop)

    def _persist_drops(
        self, loop: asyncio.AbstractEventLoop, now: float, force: bool = False
    ) -> None:
        if not self._unpersisted_drops:
            return
        if not force and now - self._drops_flushed_at < LOSS_FLUSH_S:
            return
        count, self._unpersisted_drops = self._unpersisted_drops, 0
        self._drops_flushed_at = now
        with contextlib.suppress(RuntimeError):  # loop closed: the count dies with it
            asyncio.run_coroutine_threadsafe(self._sink.count_loss("flood", count), loop)

    def _fire(self, event: str, detail: str | None, loop: asyncio.AbstractEventLoop) -> None:
        """Apply one transition; emit device.status only when the state actually changes."""
        with self._lock:
            change = TRANSITIONS.get((self._state, event))
            if change is None:
                return
            state, condition = change
            self._state, self._condition, self._detail = state, condition, detail
        log.info("%s: %s (%s): %s", self.device_id, state.value, condition, detail)
        clipped = detail[:_DETAIL_LEN] if detail else None
        self._capture(
            DeviceStatusPayload(state=state.value, condition=condition, detail=clipped), loop
        )

    def _capture(self, payload: Payload, loop: asyncio.AbstractEventLoop) -> None:
        """Block this thread until the sink has made `payload` durable (DESIGN guarantee 1)."""
        coro = self._sink.capture(self.device_id, payload, datetime.now(UTC))
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError as exc:  # loop closed under us
            coro.close()
            raise _Stopped from exc
        stop_seen_at: float | None = None
        while True:
            try:
                future.result(timeout=_WAIT_SLICE_S)
                return
            except TimeoutError:
                if self._stop.is_set() and stop_seen_at is None:
                    stop_seen_at = time.monotonic()
                late = stop_seen_at is not None and time.monotonic() - stop_seen_at > STOP_GRACE_S
                if loop.is_closed() or late:
                    future.cancel()
                    raise _Stopped from None
            except concurrent.futures.CancelledError as exc:
                raise _Stopped from exc
            except Exception as exc:  # the sink failed (e.g. OutboxClosed): stop reading
                log.error("%s: sink refused an event, stopping: %r", self.device_id, exc)
                self._error = exc
                raise _Stopped from exc


def _decode(frame: Frame, scan: ScanSection) -> ScanPayload:
    try:
        return decode_frame(frame, scan)
    except Exception as exc:  # a decoder bug must not lose the raw bytes
        log.exception("decoder failed")
        raw = base64.b64encode(frame.raw[:MAX_RAW_BYTES]).decode("ascii")
        return ScanPayload(raw_b64=raw, text="", decode_error=f"decoder failed: {exc!r}"[:256])


def _resolve(done: "asyncio.Future[None]") -> None:
    if not done.done():  # set once, from the thread's last act
        done.set_result(None)


def _close_quietly(port: Any) -> None:
    try:
        port.close()
    except _PORT_ERRORS:
        log.debug("closing a lost port failed", exc_info=True)
