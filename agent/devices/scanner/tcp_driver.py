"""LAN scanner driver: asyncio streams to a device server, the serial framer, keepalive, redial.

Device servers split and merge frames across TCP segments at will and close idle links
(Moxa "TCP alive check", devices.md §1.4); the framer absorbs the first, a quiet redial the
second, and TCP keepalive or the optional read watchdog catch a peer that vanished silently.
"""

import asyncio
import contextlib
import os
import random
import socket
from typing import Any

from agent.config import ScanSection, TcpScannerConfig
from agent.devices.base import EventSink
from agent.devices.scanner.framer import ScanFramer
from agent.devices.scanner.reporter import ScanReporter
from agent.devices.states import Signal, backoff_delay
from agent.liveness import Pulse
from protocol.wire import DeviceHealth

# Redial backoff: a device server rebooting takes tens of seconds, so wait up to 30 s.
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
RECONNECT_FACTOR = 2.0
# A link that held this long is redialled once at once when it drops, and the device stays
# "online" if that works: device servers close idle links every few minutes (§1.4), and a
# status pair per quiet spell would bury real outages in the console.
RECONNECT_STABLE_S = 10.0
READ_SIZE = 4096
TICK_S = 0.5  # wake-up period while a flood is being counted
STOP_GRACE_S = 5.0  # on shutdown, the last partial frame gets this long to commit


class TcpScanner:
    """Driver for a scanner behind a TCP socket; `run` until cancelled, never raises on faults."""

    kind = "scanner"

    def __init__(
        self, config: TcpScannerConfig, sink: EventSink, *, scan: ScanSection | None = None
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
        self._running = False
        self.pulse = Pulse(self.device_id)

    def apply_scan(self, scan: ScanSection) -> None:
        """Route later scans with `scan` (remote config); the link stays up."""
        self._reporter.set_scan(scan)

    async def run(self) -> None:
        """Keep a link up until cancelled; re-raises only a sink failure (the outbox)."""
        if self._running:
            raise RuntimeError(f"{self.device_id}: run() is already running")
        self._running = True
        self._reporter.machine.start()
        loop = asyncio.get_running_loop()
        try:
            await self._serve(loop)
        finally:
            self._running = False
            self.pulse.park()
            await self._reporter.close(loop.time())

    def health(self) -> DeviceHealth:
        """State, condition and counters as of now."""
        return self._reporter.health(self.kind, self._framer.counters)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        report = self._reporter
        attempt, redial, lost = 0, False, ""
        while True:
            self.pulse.beat(self._config.connect_timeout_s)
            try:
                reader, writer = await self._dial()
            except OSError as exc:
                where = f"{self._config.host}:{self._config.port}"
                if redial:
                    await report.fire(Signal.LOST, f"{lost}; redial {where}: {_describe(exc)}")
                else:
                    await report.fire(Signal.OPEN_FAILED, f"{where}: {_describe(exc)}")
                redial = False
                await self._pause(attempt)
                attempt += 1
                continue
            opened_at = loop.time()
            try:
                await report.opened(f"{self._config.host}:{self._config.port}", redial=redial)
                lost = await self._session(reader, loop)
            finally:
                await _close(writer)
            if loop.time() - opened_at >= RECONNECT_STABLE_S:
                attempt, redial = 0, True
                continue
            redial = False
            await report.fire(Signal.LOST, lost)
            await self._pause(attempt)
            attempt += 1

    async def _pause(self, attempt: int) -> None:
        delay = self._delay(attempt)
        self.pulse.beat(delay)
        await asyncio.sleep(delay)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        c = self._config
        async with asyncio.timeout(c.connect_timeout_s):
            reader, writer = await asyncio.open_connection(c.host, c.port)
        if c.keepalive:
            try:
                sock = writer.get_extra_info("socket")
                set_keepalive(sock, c.keepalive_idle_s, c.keepalive_interval_s, c.keepalive_count)
            except OSError:
                await _close(writer)
                raise
        return reader, writer

    async def _session(self, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> str:
        """Read until the link is lost; return why. Each frame is captured before the next."""
        report, framer = self._reporter, self._framer
        idle_s = self._config.read_idle_timeout_s
        last_data_at = loop.time()
        try:
            while True:
                now = loop.time()
                deadlines = [framer.deadline(), last_data_at + idle_s if idle_s else None]
                if report.busy:
                    deadlines.append(now + TICK_S)
                due = min((d for d in deadlines if d is not None), default=None)
                # A quiet link may stay quiet for hours: no promise then (keepalive watches it).
                self.pulse.beat(None if due is None else max(0.0, due - now))
                data: bytes | None = None
                timeout = asyncio.timeout_at(due)
                try:
                    async with timeout:
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    if not timeout.expired():
                        raise  # ETIMEDOUT from the kernel: keepalive gave up on the peer
                now = loop.time()
                if data == b"":
                    return "closed by the peer"
                if data is None:
                    await report.frames(framer.poll(now), now)
                    if idle_s and now - last_data_at >= idle_s:
                        return f"no data for {idle_s:g} s: assuming a half-open link"
                else:
                    report.counters["bytes"] += len(data)
                    last_data_at = now
                    await report.frames(framer.feed(data, now), now)
                await report.tick(now)
        except OSError as exc:  # reset, keepalive timeout, unreachable
            return _describe(exc)
        finally:
            # What was read is not lost on the way out, even when cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await report.frames(framer.flush(), loop.time())

    def _delay(self, attempt: int) -> float:
        return backoff_delay(
            attempt, self._rng, RECONNECT_INITIAL_S, RECONNECT_MAX_S, RECONNECT_FACTOR
        )


def set_keepalive(sock: Any, idle_s: int, interval_s: int, count: int) -> None:
    """Turn on TCP keepalive: first probe after `idle_s` quiet, dead after `count` misses."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # Linux names (tcp(7)); other platforms keep the system defaults.
    for name, value in (
        ("TCP_KEEPIDLE", idle_s), ("TCP_KEEPINTVL", interval_s), ("TCP_KEEPCNT", count),
    ):  # fmt: skip
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _describe(exc: OSError) -> str:
    """The errno's own words ("Connection refused"), which asyncio's messages leave out."""
    if exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
