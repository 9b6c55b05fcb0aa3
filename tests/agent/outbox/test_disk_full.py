"""Disk full under the outbox: capture waits (the device is not answered), nothing is lost or
reordered, an alert is raised, and everything waiting is stored once space returns."""

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import OutboxError
from agent.outbox import Identity, Outbox
from hardware.faults.disk import DiskError, TmpfsDisk
from protocol import ScanPayload

ID = Identity("agent-disk", "store-disk")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[TmpfsDisk]:
    tmpfs = TmpfsDisk(tmp_path / "state", "1m")
    try:
        tmpfs.mount()
    except DiskError as exc:
        if os.environ.get("STOREEDGE_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(f"cannot mount a tmpfs: {exc}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    yield tmpfs
    tmpfs.unmount()


def _scan(n: int) -> ScanPayload:
    return ScanPayload(raw_b64="QUJD", text=f"DISK-{n:06d}-" + "y" * 400)


async def test_capture_waits_while_the_disk_is_full_and_resumes_when_space_returns(
    disk: TmpfsDisk,
) -> None:
    path = disk.path / "outbox.db"
    box = await Outbox.open(path, ID)
    stored = 0
    try:
        # Fill the disk with the outbox itself until an append cannot complete.
        while True:
            append = asyncio.ensure_future(box.append("scanner-1", _scan(stored)))
            done, _ = await asyncio.wait({append}, timeout=2.0)
            if not done:
                break
            assert append.result().seq == stored + 1
            stored += 1
            assert stored < 100_000, "the 1 MiB disk never filled"
        # Full: the device is not answered, more captures queue behind it, an alert is up.
        later = [asyncio.ensure_future(box.append("scanner-1", _scan(stored + i))) for i in (1, 2)]
        await asyncio.sleep(1.0)
        assert not append.done()
        assert not any(f.done() for f in later)
        assert any("disk full" in a for a in box.alerts()), box.alerts()
        disk.resize("8m")  # space returns
        results = await asyncio.wait_for(asyncio.gather(append, *later), 10)
        assert [r.seq for r in results] == [stored + 1, stored + 2, stored + 3]
        assert not any("disk full" in a for a in box.alerts())
        more = await box.append("scanner-1", _scan(10**6))
        assert more.seq == stored + 4
    finally:
        await box.close()
    conn = sqlite3.connect(path)
    texts = [t for (t,) in conn.execute(
        "SELECT json_extract(body, '$.payload.text') FROM outbox ORDER BY seq")]  # fmt: skip
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    expected = [_scan(n).text for n in range(stored)]
    expected += [_scan(stored).text, _scan(stored + 1).text, _scan(stored + 2).text]
    assert texts == [*expected, _scan(10**6).text], "an event was lost or reordered"


async def test_stopping_while_full_fails_the_waiting_captures_instead_of_hanging(
    disk: TmpfsDisk,
) -> None:
    path = disk.path / "outbox.db"
    box = await Outbox.open(path, ID)
    n = 0
    while True:
        append = asyncio.ensure_future(box.append("scanner-1", _scan(n)))
        done, _ = await asyncio.wait({append}, timeout=2.0)
        if not done:
            break
        n += 1
    await asyncio.wait_for(box.close(), 10)
    with pytest.raises(OutboxError, match="disk full"):
        await append
