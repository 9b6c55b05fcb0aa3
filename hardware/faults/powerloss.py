"""Power loss for a SQLite outbox: what could be on disk if the power went at a random instant.

The writer is frozen (SIGSTOP) at a random instant and its database and WAL copied, the WAL
first (a checkpoint between the two copies then only adds to the database copy). What a
power cut could add to that is garbage after the last commit: frames of the transaction in
progress, torn or missing. `snapshot` writes that damage into the copy; `check_copy` opens it
as SQLite would after the outage and says which events it holds. Every acknowledged event
must be there, and the events must be a prefix: seq 1..k with no hole.
"""

import os
import random
import shutil
import signal
import sqlite3
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")
WAL_HEADER = 32  # sqlite.org/fileformat2.html §4.1
FRAME_HEADER = 24
SETTLE_S = 0.05  # after SIGSTOP: lines already written to the pipe reach the reader


@dataclass(frozen=True, slots=True)
class CopyVerdict:
    """What one power-loss copy held."""

    opens: bool
    integrity: str
    held: int  # events in the copy
    prefix: bool  # seqs are exactly 1..held
    missing_acknowledged: int
    torn_bytes: int


def last_commit_end(wal: bytes) -> int:
    """Byte offset just past the WAL's last commit frame (WAL_HEADER if there is none)."""
    if len(wal) < WAL_HEADER:
        return 0
    (page_size,) = struct.unpack(">I", wal[8:12])
    frame = FRAME_HEADER + page_size
    end = WAL_HEADER
    offset = WAL_HEADER
    while offset + frame <= len(wal):
        (db_size_after_commit,) = struct.unpack(">I", wal[offset + 4 : offset + 8])
        offset += frame
        if db_size_after_commit:
            end = offset
    return end


def freeze_and_copy(pid: int, db: Path, dest: Path, frozen: Callable[[], _T]) -> _T:
    """SIGSTOP `pid`, copy `db`'s WAL then `db` to `dest`, SIGCONT; `frozen()`'s result.

    `frozen` runs while the writer is stopped (after the pipe settled), so what it reads as
    acknowledged is exactly what was acknowledged before the copy, nothing after.
    """
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(SETTLE_S)
        seen = frozen()
        wal = Path(f"{db}-wal")
        if wal.exists():
            shutil.copyfile(wal, f"{dest}-wal")
        shutil.copyfile(db, dest)
    finally:
        os.kill(pid, signal.SIGCONT)
    return seen


def tear(dest: Path, rng: random.Random) -> int:
    """Damage what follows the last commit in the copy's WAL as a power cut could; bytes torn."""
    wal = Path(f"{dest}-wal")
    if not wal.exists():
        return 0
    data = wal.read_bytes()
    keep = last_commit_end(data)
    if keep == 0:
        return 0
    cut = rng.randint(keep, len(data))
    garbage = bytes(rng.randrange(256) for _ in range(rng.choice((0, 0, 17, 512, 4096))))
    wal.write_bytes(data[:cut] + garbage)
    return len(data) - cut + len(garbage)


def check_copy(dest: Path, acknowledged: set[int], torn: int = 0) -> CopyVerdict:
    """Open the copy (recovering its WAL) and hold it against what was acknowledged."""
    try:
        conn = sqlite3.connect(dest)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            seqs = [seq for (seq,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return CopyVerdict(False, str(exc), 0, False, len(acknowledged), torn)
    held = set(seqs)
    return CopyVerdict(
        opens=True,
        integrity=integrity,
        held=len(seqs),
        prefix=seqs == list(range(1, len(seqs) + 1)),
        missing_acknowledged=len(acknowledged - held),
        torn_bytes=torn,
    )
