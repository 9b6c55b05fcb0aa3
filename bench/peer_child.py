"""A capturing process for bench/peer's kill -9 rounds: ThingsBoard's storage or our outbox.

`tb|outbox DIR FLAGS RATE`: capture event i (its scan text is str(i)) at RATE events/s until
killed; after each capture is acknowledged to the caller, byte i of the shared file FLAGS is
set, so the parent knows, after the kill, exactly which events were acknowledged.
"""

import asyncio
import logging
import mmap
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.outbox import Identity, Outbox
from agent.outbox.outbox import encode_pending
from protocol import ScanPayload

IDENTITY = Identity("agent-bench", "store-bench")


def scan(index: int) -> ScanPayload:
    """The bench scan with its index as the decoded text, so it can be found after a crash."""
    return ScanPayload(raw_b64="", text=str(index), classification="unrecognised")


def body(index: int) -> bytes:
    """The envelope the outbox would store for scan `index`."""
    return encode_pending(IDENTITY, "scanner-front", scan(index), datetime.now(UTC)).body(index)


class TraceLogger(logging.Logger):
    """The gateway's loggers have a `trace` level below DEBUG; a plain Logger lacks it."""

    def trace(self, *args: Any, **kwargs: Any) -> None:
        """Dropped: the bench runs the storage at WARNING."""


def open_tb(directory: Path) -> Any:
    """ThingsBoard IoT Gateway's SQLite event storage with its code defaults."""
    from thingsboard_gateway.storage.sqlite.sqlite_event_storage import SQLiteEventStorage

    logger = TraceLogger("tb-storage", logging.WARNING)
    # `data_file_path` must be a folder ending in "/"; the file is always data.db.
    return SQLiteEventStorage({"data_file_path": f"{directory}/"}, logger, threading.Event())


def run_tb(directory: Path, flags: mmap.mmap, rate: float) -> None:
    """Put one event per 1/rate s, as the gateway's storage thread does; mark each True."""
    storage = open_tb(directory)
    print("ready", flush=True)
    started = time.monotonic()
    index = 0
    while index < len(flags):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if storage.put(body(index).decode()):
            flags[index] = 1
        index += 1


async def run_outbox(path: Path, flags: mmap.mmap, rate: float) -> None:
    """Append one event per 1/rate s (open loop); mark each once its append returned."""
    outbox = await Outbox.open(path, IDENTITY)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(index: int) -> None:
        await outbox.append("scanner-front", scan(index))
        flags[index] = 1

    tasks = set()
    for index in range(len(flags)):
        delay = started + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def main(argv: list[str]) -> None:
    """Parse the arguments of the module docstring and capture until killed."""
    which, directory, flags_path, rate = argv
    with open(flags_path, "r+b") as file:
        flags = mmap.mmap(file.fileno(), 0)
    if which == "tb":
        run_tb(Path(directory), flags, float(rate))
    else:
        asyncio.run(run_outbox(Path(directory) / "outbox.db", flags, float(rate)))


if __name__ == "__main__":
    main(sys.argv[1:])
