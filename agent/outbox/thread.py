"""The outbox's single writer thread: group commit of whatever is waiting, one burst at a time."""

import asyncio
import collections
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.errors import OutboxError
from agent.outbox.quarantine import Quarantine, is_corruption, quarantine
from agent.outbox.records import PendingEvent, StoredEvent
from agent.outbox.store import OutboxStore, connect, read_batch

log = logging.getLogger(__name__)

# One transaction takes at most this many waiting appends; bounds the latency of a burst.
MAX_GROUP = 1000
# An ack deletes at most this many rows per transaction, each slice riding with the captures
# waiting then: a capture never waits behind more than one slice (~1 ms), where a whole
# 500-row DELETE held the captures beside it for 4-14 ms (docs/BENCHMARKS.md).
ACK_SLICE = 100
# The background checkpointer wakes this often and checkpoints once the WAL is this big.
CHECKPOINT_INTERVAL_S = 0.5
CHECKPOINT_MIN_WAL_BYTES = 4 * 1024 * 1024
# Disk full: appends wait (their devices unanswered) and are tried again this often.
DISK_FULL_RETRY_S = 0.5
# SQLite result codes for a full disk and a failed write (sqlite.org/rescode.html).
SQLITE_FULL = 13
SQLITE_IOERR = 10

_Settled = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[OutboxStore], Any], future: "asyncio.Future[Any]") -> None:
        self.fn = fn
        self.future = future


class _Append:
    __slots__ = ("event", "future")

    def __init__(self, event: PendingEvent, future: "asyncio.Future[Any]") -> None:
        self.event = event
        self.future = future


class _Ack:
    """Delivered rows to delete, ACK_SLICE per transaction; answered once all are gone."""

    __slots__ = ("future", "slices")

    def __init__(self, seqs: Sequence[int], future: "asyncio.Future[Any]") -> None:
        ordered = sorted(seqs)
        self.slices = collections.deque(
            ordered[i : i + ACK_SLICE] for i in range(0, len(ordered), ACK_SLICE)
        )
        self.future = future


_STOP = object()


def _settle(settled: list[_Settled]) -> None:
    for future, result, error in settled:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class OutboxThread:
    """Owns the OutboxStore; every call is queued and answered on the caller's loop."""

    def __init__(
        self,
        store: OutboxStore,
        loop: asyncio.AbstractEventLoop,
        on_commit: Callable[[], None],
        on_quarantine: Callable[[Quarantine], None] | None = None,
    ) -> None:
        self._store = store
        self._loop = loop
        self._on_commit = on_commit
        self._on_quarantine = on_quarantine
        # Set while appends wait for disk space (read by heartbeats and the status page).
        self.disk_full_since: float | None = None
        self._stalled: list[_Append] = []
        # Acks with slices still to delete, oldest first; the head's next slice goes into
        # the next transaction (in order, so rows leave in the order they were answered).
        self._acking: collections.deque[_Ack] = collections.deque()
        self._stopping = threading.Event()
        self._queue: queue.SimpleQueue[_Call | _Append | _Ack | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._checkpointer = _Checkpointer(store.path)
        self._thread.start()
        self._checkpointer.start()

    def append(self, event: PendingEvent) -> "asyncio.Future[Any]":
        """Queue one event; the future resolves to its AppendResult once committed."""
        future = self._loop.create_future()
        self._queue.put(_Append(event, future))
        return future

    def ack(self, seqs: Sequence[int]) -> "asyncio.Future[Any]":
        """Queue a delete of delivered rows; it commits with the appends waiting beside it."""
        future = self._loop.create_future()
        self._queue.put(_Ack(seqs, future))
        return future

    def call(self, fn: Callable[[OutboxStore], Any]) -> "asyncio.Future[Any]":
        """Run `fn(store)` on the writer thread, in order with appends."""
        future = self._loop.create_future()
        self._queue.put(_Call(fn, future))
        return future

    def stop(self) -> None:
        """Finish queued work, close the database; blocks until the thread is gone."""
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join()
        self._checkpointer.stop()

    def _run(self) -> None:
        stopping = False
        # After a stop, the slices of acks already queued are still deleted.
        while not stopping or (self._acking and self.disk_full_since is None):
            items: list[_Call | _Append | _Ack | object] = []
            if not (self._acking and self.disk_full_since is None):  # else: slices to delete
                wait = DISK_FULL_RETRY_S if self._stalled or self._acking else None
                with contextlib.suppress(queue.Empty):  # then only the stalled work is retried
                    items.append(self._queue.get(timeout=wait))
            while len(items) < MAX_GROUP:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            settled: list[_Settled] = []
            # Appends stalled on a full disk go first, so order is kept.
            appends, self._stalled = self._stalled, []
            committed = False
            for item in items:
                if isinstance(item, _Append):
                    appends.append(item)
                    continue
                if isinstance(item, _Ack):
                    if item.slices:
                        self._acking.append(item)
                    else:
                        settled.append((item.future, None, None))
                    continue
                committed |= self._flush(appends, settled)
                appends = []
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Call):
                    settled.append(self._call(item))
            committed |= self._flush(appends, settled)
            stalled = self.disk_full_since is not None and (self._stalled or self._acking)
            if stalled and (stopping or self._stopping.is_set()):
                # Stopping with the disk still full: these were never stored, nor answered.
                error = OutboxError("outbox disk full: not stored")
                settled.extend((item.future, None, error) for item in self._stalled)
                settled.extend((item.future, None, error) for item in self._acking)
                self._stalled = []
                self._acking.clear()
            if settled or committed:
                # One wake-up of the loop per burst: each call_soon_threadsafe is a syscall.
                self._loop.call_soon_threadsafe(self._settle_and_notify, settled, committed)
        try:
            self._store.close()
        except sqlite3.Error as exc:  # a full disk refuses the last checkpoint: the WAL keeps it
            log.warning("outbox closed without its final checkpoint: %s", exc)

    def _call(self, item: _Call) -> _Settled:
        try:
            return (item.future, self._with_recovery(item.fn), None)
        except Exception as exc:  # handed to the awaiting caller
            self._note_disk_full(exc)
            return (item.future, None, exc)

    def _settle_and_notify(self, settled: list[_Settled], committed: bool) -> None:
        _settle(settled)
        if committed:
            self._on_commit()

    def _flush(self, appends: list[_Append], settled: list[_Settled]) -> bool:
        """Commit these appends and the oldest ack's next slice in one transaction; True if
        events were appended."""
        ack = self._acking[0] if self._acking else None
        if not appends and ack is None:
            return False
        if self._stalled:  # older appends wait for space: newer ones queue behind
            self._stalled.extend(appends)
            return False
        events = [item.event for item in appends]
        acked = ack.slices[0] if ack is not None else []
        try:
            results = self._with_recovery(lambda store: store.append_many(events, acked))
        except Exception as exc:
            if self._note_disk_full(exc):
                # Unanswered: the devices wait, nothing lost; the slice's rows stay until
                # there is room to delete them (it is still the head's next one).
                self._stalled.extend(appends)
                return False
            log.exception("outbox commit failed (%d appends, %d acked)", len(appends), len(acked))
            settled.extend((item.future, None, exc) for item in appends)
            if ack is not None:  # the rest of it is not tried: its caller learns of the failure
                self._acking.popleft()
                settled.append((ack.future, None, exc))
            return False
        if self.disk_full_since is not None:
            log.warning("outbox has disk space again; %d waiting events stored", len(appends))
            self.disk_full_since = None
        settled.extend(
            (item.future, result, None) for item, result in zip(appends, results, strict=True)
        )
        if ack is not None:
            ack.slices.popleft()
            if not ack.slices:
                self._acking.popleft()
                settled.append((ack.future, None, None))
        return bool(appends)

    def _with_recovery(self, fn: Callable[[OutboxStore], Any]) -> Any:
        """`fn(store)`; on a corrupted file, quarantine it, open a fresh one, try once more."""
        try:
            return fn(self._store)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._recover(exc)
        return fn(self._store)

    def _recover(self, exc: BaseException) -> None:
        old = self._store
        self._checkpointer.stop()
        with contextlib.suppress(sqlite3.Error):
            old.conn.close()
        record = quarantine(old.path, str(exc))
        self._store = OutboxStore(old.path, old.identity, old.max_bytes, old.synchronous)
        self._checkpointer = _Checkpointer(old.path)
        self._checkpointer.start()
        if self._on_quarantine is not None:
            self._loop.call_soon_threadsafe(self._on_quarantine, record)

    def _note_disk_full(self, exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(exc, sqlite3.Error) or code is None:
            return False
        if code & 0xFF not in (SQLITE_FULL, SQLITE_IOERR):
            return False
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error("outbox cannot write (%s); capture waits until there is space", exc)
        return True


class OutboxReader:
    """Reads batches for the drain on a connection and thread of its own, so they never wait
    behind (or hold up) captures on the writer: WAL lets readers run beside the writer."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-reader")
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None

    async def read_batch(self, max_events: int, max_bytes: int, after: int) -> list[StoredEvent]:
        """`store.read_batch` on the reader's connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read, max_events, max_bytes, after)

    def _read(self, max_events: int, max_bytes: int, after: int) -> list[StoredEvent]:
        # A quarantine moves the file away and the writer opens a fresh one at the same path:
        # an open connection would go on reading the old file, so follow the path's inode.
        inode = os.stat(self._path).st_ino
        if self._conn is not None and inode != self._inode:
            self._close()
        if self._conn is None:
            self._conn = connect(self._path, "FULL")
            self._inode = inode
        return read_batch(self._conn, max_events, max_bytes, after)

    def close(self) -> None:
        """Close the connection on its own thread, then end the thread; blocks."""
        self._pool.submit(self._close).result()
        self._pool.shutdown()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Checkpointer:
    """Checkpoints the WAL from its own connection, so capture never waits on it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wal = Path(f"{path}-wal")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = connect(self._path, "FULL")
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                try:
                    if self._wal.stat().st_size >= CHECKPOINT_MIN_WAL_BYTES:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except FileNotFoundError:
                    continue
                except sqlite3.Error as exc:
                    log.warning("outbox checkpoint failed: %s", exc)
        finally:
            conn.close()
