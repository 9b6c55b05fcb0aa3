"""Group concurrent single-row calls into one statement: group commit for small writes.

At fleet scale the cost of a heartbeat or a token lookup is the statement, not the row:
1,700 one-row UPDATEs a second keep every pooled connection busy parsing and planning.
A call is sent at once when no batch is in flight (no added latency when quiet); calls made
while one is in flight wait for it and then go together in the next, up to `max_items`.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    """`await submit(item)` runs `run_batch([..., item, ...])` and returns that item's result."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[K]], Awaitable[Sequence[R]]],
        max_items: int = 500,
        concurrency: int = 2,
    ) -> None:
        self._run_batch = run_batch
        self._max_items = max_items
        self._concurrency = concurrency
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: K) -> R:
        """The result for `item`, or the exception its batch raised."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._running) < self._concurrency:
            task = asyncio.create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def close(self) -> None:
        """Wait for the batches in flight; calls after this still work (a new batch starts)."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._running)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                continue
            try:
                results = await self._run_batch([item for item, _ in live])
            except Exception as exc:
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in live:
                    future.cancel()  # shutting down: the callers are being cancelled too
                raise
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
