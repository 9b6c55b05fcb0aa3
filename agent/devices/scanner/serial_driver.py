"""Serial scanner driver: one reader thread per port, each frame durable before the next one."""

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import termios
import threading
import time
from collections.abc import Coroutine
from typing import Any

import serial

from agent.config import ScanSection, SerialScannerConfig
from agent.devices.base import EventSink
from agent.devices.scanner.framer import Frame, ScanFramer
from agent.devices.scanner.reporter import ScanReporter
from agent.devices.states import Signal, backoff_delay
from agent.errors import DeviceError
from agent.liveness import Pulse
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
# On shutdown, an event already handed to the loop gets this long to commit.
STOP_GRACE_S = 5.0
_WAIT_SLICE_S = 0.1

# pyserial raises SerialException (an OSError); termios.error is not one.
_PORT_ERRORS = (OSError, termios.error)


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before reopen number `attempt` (0-based): exponential, capped, jittered."""
    return backoff_delay(attempt, rng, RECONNECT_INITIAL_S, RECONNECT_MAX_S, RECONNECT_FACTOR)


class _Stopped(Exception):
    """The reader must end now (stop requested past grace, loop gone, or sink failed)."""


class SerialScanner:
    """Driver for a scanner on a serial port; `run` until cancelled, never raises on faults.

    Blocking reads run on the driver's own thread; everything else (state machine, flood
    guard, capture) is the ScanReporter on the event loop, which the thread waits on.
    """

    kind = "scanner"

    def __init__(
        self, config: SerialScannerConfig, sink: EventSink, *, scan: ScanSection | None = None
    ) -> None:
        self.device_id = config.id
        self._config = config
        self._framer = ScanFramer(
            [t.encode("utf-8") for t in config.terminators],
            config.idle_timeout_ms / 1000,
            config.max_frame_bytes,
        )
        self._reporter = ScanReporter(
            config.id, sink, scan or ScanSection(), config.flood_max_per_s, config.flood_burst
        )
        self._rng = random.Random()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._running = False
        self.pulse = Pulse(self.device_id)  # beaten by the reader thread; read by the watchdog

    def apply_scan(self, scan: ScanSection) -> None:
        """Route later scans with `scan` (remote config); the port stays open."""
        self._reporter.set_scan(scan)  # frames are decoded on the loop, by the reporter

    async def run(self) -> None:
        """Read until cancelled; re-raises only a sink failure (the outbox, not the device)."""
        if self._running:
            raise RuntimeError(f"{self.device_id}: run() is already running")
        self._running, self._error = True, None
        self._stop.clear()
        self._reporter.machine.start()
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
            await self._reporter.close(loop.time())
            self._running = False
            self.pulse.park()
        if self._error is not None:
            raise self._error

    def health(self) -> DeviceHealth:
        """State, condition and counters as of now; call it from the loop."""
        return self._reporter.health(self.kind, dict(self._framer.counters))

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
            self._on_loop(self._reporter.fire(Signal.OPEN_FAILED, str(exc)), loop)
            return None
        self._on_loop(self._reporter.opened(f"{c.port} at {c.baudrate} baud"), loop)
        return port

    def _read_until_lost(self, port: Any, loop: asyncio.AbstractEventLoop) -> None:
        report = self._reporter
        while not self._stop.is_set():
            self.pulse.beat(READ_TIMEOUT_S)  # a capture stuck on the outbox breaks this
            try:
                # Block for one byte (up to READ_TIMEOUT_S), then take whatever else is there.
                data: bytes = port.read(port.in_waiting or 1)
            except _PORT_ERRORS as exc:  # unplug: EIO or "readiness to read but no data"
                self._frames(self._framer.flush(), loop)
                self._on_loop(report.fire(Signal.LOST, str(exc)), loop)
                return
            now = time.monotonic()
            report.counters["bytes"] += len(data)
            self._frames(self._framer.feed(data, now) if data else self._framer.poll(now), loop)
            if report.busy:
                self._on_loop(report.tick(loop.time()), loop)
        # Stopping: what was read is not lost on the way out.
        self._frames(self._framer.flush(), loop)

    def _frames(self, frames: list[Frame], loop: asyncio.AbstractEventLoop) -> None:
        if frames:
            self._on_loop(self._reporter.frames(frames, loop.time()), loop)

    def _on_loop(self, coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
        """Run `coro` on the loop and block this thread until it is done (durable captures)."""
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


def _resolve(done: "asyncio.Future[None]") -> None:
    if not done.done():  # set once, from the thread's last act
        done.set_result(None)


def _close_quietly(port: Any) -> None:
    try:
        port.close()
    except _PORT_ERRORS:
        log.debug("closing a lost port failed", exc_info=True)
