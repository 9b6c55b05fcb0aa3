"""One open connection to a printer: a reader task demultiplexes what comes back."""

import asyncio
import contextlib
from collections.abc import Callable

from agent.devices.printer.errors import StatusError
from agent.devices.printer.link import Link, LinkLost
from agent.devices.printer.status import (
    REQUESTS,
    AsbBlock,
    Junk,
    PrinterStatus,
    ProcessDone,
    Reply,
    StatusFramer,
    merge,
)


class PrinterSession:
    """Polls status, sends data and awaits process-ID answers over one Link."""

    def __init__(
        self,
        link: Link,
        on_asb: Callable[[PrinterStatus], None],
        on_junk: Callable[[Junk], None],
    ) -> None:
        self.link = link
        self._on_asb = on_asb
        self._on_junk = on_junk
        self._framer = StatusFramer()
        self._lost: LinkLost | None = None
        # Waiters resolve True when answered, False when the link died (then raise _lost):
        # a future that is never awaited must not carry an exception.
        self._poll: asyncio.Future[bool] | None = None
        self._replies: dict[int, int] = {}
        self._poll_junk: str | None = None
        self._done: dict[bytes, asyncio.Future[bool]] = {}
        self._poll_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read_loop(), name=f"printer-read:{link.describe}")

    @property
    def lost(self) -> LinkLost | None:
        """Why the link died, once it has."""
        return self._lost

    async def poll(self, timeout_s: float) -> PrinterStatus:
        """DLE EOT 1–4 and their answers; StatusError on junk, TimeoutError on silence."""
        async with self._poll_lock:
            self._raise_if_lost()
            self._poll = asyncio.get_running_loop().create_future()
            self._replies, self._poll_junk = {}, None
            try:
                async with asyncio.timeout(timeout_s):
                    await self.send(self._framer.expect(*REQUESTS))
                    answered = await self._poll
            except TimeoutError:
                self._framer.reset()  # late answers to this poll must not fill the next one
                raise
            finally:
                self._poll = None
            if not answered:
                self._raise_if_lost()
            if self._poll_junk is not None:
                raise StatusError(self._poll_junk)
            return merge(self._replies)

    def expect_done(self, pid: bytes) -> "asyncio.Future[bool]":
        """Register for the GS ( H answer with `pid` (before sending it, so none is missed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._lost is not None:
            future.set_result(False)
        self._done[pid] = future
        return future

    async def send(self, data: bytes) -> None:
        """Write `data` whole, never interleaved with another write; LinkLost if it broke."""
        self._raise_if_lost()
        async with self._write_lock:
            await self.link.write(data)

    async def close(self) -> None:
        """Stop the reader and close the link."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._fail_waiters(LinkLost("session closed"))
        await self.link.close()

    async def _read_loop(self) -> None:
        try:
            while True:
                for item in self._framer.feed(await self.link.read()):
                    self._dispatch(item)
        except LinkLost as exc:
            self._fail_waiters(exc)

    def _dispatch(self, item: Reply | AsbBlock | ProcessDone | Junk) -> None:
        if isinstance(item, Reply):
            self._replies[item.n] = item.value
        elif isinstance(item, Junk):
            self._on_junk(item)
            if self._poll is not None:
                self._poll_junk = f"status junk {item.data.hex(' ')}: {item.reason}"
        elif isinstance(item, AsbBlock):
            self._on_asb(item.status)
        else:
            done = self._done.pop(item.pid, None)
            if done is not None and not done.done():
                done.set_result(True)
        if self._poll is not None and not self._poll.done() and self._framer.pending == 0:
            self._poll.set_result(True)

    def _fail_waiters(self, exc: LinkLost) -> None:
        if self._lost is None:
            self._lost = exc
        waiters = [*self._done.values(), *([self._poll] if self._poll else [])]
        self._done.clear()
        for future in waiters:
            if not future.done():
                future.set_result(False)

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise LinkLost(str(self._lost)) from self._lost
