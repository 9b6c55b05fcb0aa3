"""Keyboard-wedge scanner driver: the evdev node, grabbed, read through the loop's selector.

Bytes are pulled from the kernel as soon as they arrive, because evdev's per-client buffer is
small and overflows into SYN_DROPPED; the scans decoded from them are captured strictly in
order, each awaited before the next. A scan's raw bytes are its decoded text in UTF-8: a
wedge scanner sends key presses, not bytes.
"""

import asyncio
import contextlib
import errno
import fcntl
import os
import random
import stat
from collections import deque

from agent.config import HidScannerConfig, ScanSection
from agent.devices.base import EventSink
from agent.devices.scanner.framer import Frame
from agent.devices.scanner.hid import EVENT, HidDecoder, HidScan
from agent.devices.scanner.reporter import ScanReporter
from agent.devices.states import Signal, backoff_delay
from agent.liveness import Pulse
from protocol.wire import DeviceHealth

# _IOW('E', 0x90, int) from linux/input.h: exclusive access, so keystrokes reach no console,
# getty or desktop (devices.md §1.5; odoo_upos.md §2.1 does the same with evdev's grab()).
EVIOCGRAB = 0x40044590
# Replug backoff as for USB serial: the node reappears within about a second (§4.4).
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0
RECONNECT_FACTOR = 2.0
RECONNECT_STABLE_S = 10.0  # open this long, the next loss starts the backoff afresh
READ_SIZE = EVENT.size * 64
# Reading pauses when this many scans wait for the outbox; the kernel then drops events and
# says so with SYN_DROPPED, which the decoder marks in the scan and counts, and which reaches
# the outbox's loss counters as SYN_DROPPED_LOSS. Why read ahead at all: docs/SCANNERS.md.
MAX_PENDING_SCANS = 256
SYN_DROPPED_LOSS = "hid_syn_dropped"
TICK_S = 0.5  # wake-up period while a flood is being counted
STOP_GRACE_S = 5.0


class HidScanner:
    """Driver for a USB keyboard-wedge scanner; `run` until cancelled, never raises on faults."""

    kind = "scanner"

    def __init__(
        self, config: HidScannerConfig, sink: EventSink, *, scan: ScanSection | None = None
    ) -> None:
        self.device_id = config.id
        self._config = config
        self._decoder = HidDecoder(
            config.layout,
            config.gs_substitute,
            config.inter_key_timeout_ms / 1000,
            config.max_frame_bytes,
        )
        self._reporter = ScanReporter(
            config.id, sink, scan or ScanSection(), config.flood_max_per_s, config.flood_burst
        )
        self._grab_failed = 0
        self._syn_dropped_counted = 0  # decoder's syn_dropped already handed to the reporter
        self._rng = random.Random()
        self._running = False
        self.pulse = Pulse(self.device_id)

    def apply_scan(self, scan: ScanSection) -> None:
        """Route later scans with `scan` (remote config); the link stays up."""
        self._reporter.set_scan(scan)

    async def run(self) -> None:
        """Keep the device open until cancelled; re-raises only a sink failure (the outbox)."""
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
        """State, condition and counters (decoder's included) as of now."""
        extra = {**self._decoder.counters, "grab_failed": self._grab_failed}
        return self._reporter.health(self.kind, extra)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        report, attempt = self._reporter, 0
        while True:
            self.pulse.beat()
            try:
                fd, note = await _off_loop_open(loop, self._config.path, self._config.grab)
            except OSError as exc:
                await report.fire(Signal.OPEN_FAILED, str(exc))
                await self._pause(attempt)
                attempt += 1
                continue
            opened_at = loop.time()
            try:
                if note:
                    self._grab_failed += 1
                await report.opened(self._config.path + (f"; {note}" if note else ""))
                lost = await self._session(fd, loop)
            finally:
                os.close(fd)
            if loop.time() - opened_at >= RECONNECT_STABLE_S:
                attempt = 0
            await report.fire(Signal.LOST, lost)
            await self._pause(attempt)
            attempt += 1

    async def _pause(self, attempt: int) -> None:
        delay = self._delay(attempt)
        self.pulse.beat(delay)
        await asyncio.sleep(delay)

    async def _session(self, fd: int, loop: asyncio.AbstractEventLoop) -> str:
        """Decode until the device goes away; return why."""
        report, decoder = self._reporter, self._decoder
        pending: deque[tuple[Frame, float]] = deque()
        wake = asyncio.Event()
        lost: list[str] = []
        paused = False

        def queue(scans: list[HidScan], now: float) -> None:
            pending.extend((Frame(s.text.encode("utf-8"), s.overlong), now) for s in scans)

        def on_readable() -> None:
            nonlocal paused
            got = False
            try:
                while len(pending) < MAX_PENDING_SCANS:
                    data = os.read(fd, READ_SIZE)
                    if not data:  # a FIFO's writer went away; evdev says ENODEV instead
                        lost.append("end of stream")
                        break
                    got = True
                    report.counters["bytes"] += len(data)
                    queue(decoder.feed(data, loop.time()), loop.time())
            except BlockingIOError:
                pass
            except OSError as exc:  # ENODEV/EIO: unplugged
                lost.append(f"{self._config.path}: {os.strerror(exc.errno or errno.EIO)}")
            if lost or len(pending) >= MAX_PENDING_SCANS:
                loop.remove_reader(fd)
                paused = not lost
            if got or lost:
                wake.set()  # new keys move the inter-key deadline, so always re-arm it

        try:
            loop.add_reader(fd, on_readable)
        except OSError as exc:  # e.g. /dev/null: a character device epoll refuses
            return f"{self._config.path}: cannot be polled: {exc}"
        try:
            while not lost:
                due = decoder.deadline()
                if report.busy:
                    tick_at = loop.time() + TICK_S
                    due = tick_at if due is None else min(due, tick_at)
                # No keys and no deadline: the scanner is simply unused, which owes nothing.
                self.pulse.beat(None if due is None else max(0.0, due - loop.time()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(due):
                        await wake.wait()
                wake.clear()
                if not pending and not lost:
                    on_readable()  # keys that came with the deadline are not a pause
                queue(decoder.poll(loop.time()), loop.time())
                while pending:
                    frame, at = pending.popleft()
                    await report.frames([frame], at)
                if paused and not lost:
                    paused = False
                    loop.add_reader(fd, on_readable)
                self._note_kernel_losses()
                await report.tick(loop.time())
            return lost[0]
        finally:
            loop.remove_reader(fd)
            queue(decoder.flush(), loop.time())
            self._note_kernel_losses()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    while pending:  # what was typed is not lost on the way out
                        frame, at = pending.popleft()
                        await report.frames([frame], at)

    def _note_kernel_losses(self) -> None:
        """SYN_DROPPED means keystrokes the kernel threw away: a loss, counted by reason."""
        dropped = self._decoder.counters["syn_dropped"] - self._syn_dropped_counted
        if dropped:
            self._syn_dropped_counted += dropped
            self._reporter.count_loss(SYN_DROPPED_LOSS, dropped)

    def _delay(self, attempt: int) -> float:
        return backoff_delay(
            attempt, self._rng, RECONNECT_INITIAL_S, RECONNECT_MAX_S, RECONNECT_FACTOR
        )


async def _off_loop_open(
    loop: asyncio.AbstractEventLoop, path: str, grab: bool
) -> tuple[int, str | None]:
    """Open (and grab) in a worker thread; a cancelled open still closes its descriptor."""
    future = loop.run_in_executor(None, open_device, path, grab)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_opened)
        raise


def open_device(path: str, grab: bool) -> tuple[int, str | None]:
    """Non-blocking fd for an evdev node (or FIFO), grabbed if asked; note why a grab was moot."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise OSError(errno.ENODEV, "not a character device", path)
        if not grab:
            return fd, None
        try:
            fcntl.ioctl(fd, EVIOCGRAB, 1)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise OSError(exc.errno, "grabbed by another program (EVIOCGRAB)", path) from exc
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
            name = errno.errorcode[exc.errno]
            return fd, f"not an evdev node (EVIOCGRAB: {name}): keystrokes are not grabbed"
        return fd, None
    except BaseException:
        os.close(fd)
        raise


def _close_opened(future: "asyncio.Future[tuple[int, str | None]]") -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result()[0])
