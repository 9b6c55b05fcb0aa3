"""One thread owns one sqlite3 connection; the event loop hands it work and awaits results.

The aiosqlite shape (research/aesthetics.md §2): a queue of (callable, future), results posted
back with `loop.call_soon_threadsafe`, so no sqlite3 call ever runs on the event loop and every
call on the connection is serialized without locks.
"""

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cloud.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None


class SqliteThread:
    """Runs callables against a private connection on a dedicated daemon thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._ready: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._closing = False
        self.pending = 0  # calls queued or running, for the pool gauges

    async def async_start(self) -> None:
        """Start the thread and open the connection; raise StorageError if it cannot open."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stopped = loop.create_future()
        self._thread.start()
        await self._ready

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the thread; sqlite3 errors come back as StorageError."""
        if self._closing:
            raise StorageError("storage is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future))
        self.pending += 1
        try:
            return await future
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc
        finally:
            self.pending -= 1

    async def async_close(self) -> None:
        """Finish queued work, close the connection and end the thread; idempotent."""
        if self._closing or self._stopped is None:
            self._closing = True
            return
        self._closing = True
        self._jobs.put(None)
        await self._stopped
        # The thread resolves `_stopped` as its very last act, so this join returns at once.
        self._thread.join()

    def _work(self) -> None:
        assert self._ready is not None
        assert self._stopped is not None
        loop = self._ready.get_loop()
        try:
            conn = self._connect()
        except BaseException as exc:  # report any failure to open, then end the thread
            error = StorageError(f"cannot open database: {exc}")
            error.__cause__ = exc
            _post(loop, self._ready, None, error)
            _post(loop, self._stopped, None, None)
            return
        _post(loop, self._ready, None, None)
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                try:
                    result = fn(conn)
                except BaseException as exc:  # handed to the awaiting coroutine
                    _post(loop, future, None, exc)
                else:
                    _post(loop, future, result, None)
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                log.exception("closing the sqlite connection failed")
            _post(loop, self._stopped, None, None)


def _post(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # RuntimeError: the loop closed without closing us (a crashed test, interpreter exit), so
    # nobody is waiting for this result.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # A caller may have been cancelled while its job ran: its result is then dropped.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
