"""A corrupted outbox is quarantined, not repaired in place: kept for forensics, salvaged, replaced.

On open (and when SQLite reports corruption while running, agent/outbox/thread.py) the file and
its WAL move to `<state_dir>/quarantine/`, every row still readable is copied into a fresh
outbox (the same bytes, so the cloud dedupes what it already has), and an alert is recorded in
`quarantine/alerts.jsonl` for heartbeats, the status page and the log. The fresh outbox goes on
numbering after the last seq it can prove; when none can be read it jumps to a new seq epoch,
so seq never goes backwards and the gap is the alert's.
"""

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.outbox.schema import migrate

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
ALERTS_FILE = "alerts.jsonl"
# Seq after a quarantine that salvaged no seq: above anything an outbox could have issued
# (2**40 events is 35 years at 1,000 events/s), and still far below the int64 limit.
SEQ_EPOCH = 2**40
# SQLite result codes meaning the file itself is damaged (sqlite.org/rescode.html).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
# Salvage skips past an unreadable stretch of rowids in growing steps, this many times at most.
SALVAGE_MAX_SKIPS = 64
SALVAGE_PAGE_ROWS = 1000


@dataclass(frozen=True, slots=True)
class Quarantine:
    """One quarantined outbox: where it went, why, and what came back."""

    at: float
    file: str
    reason: str
    salvaged_rows: int
    salvaged_events: int
    last_seq: int | None  # the highest seq provably issued by the old file
    next_seq: int  # where the fresh outbox goes on

    def alert(self) -> str:
        """One line for heartbeats and the status page."""
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"outbox corrupt at {when} ({self.reason[:80]}); kept as {self.file}, "
            f"{self.salvaged_events} unsynced events salvaged, seq goes on at {self.next_seq}"
        )


def is_corruption(exc: BaseException) -> bool:
    """True when `exc` is SQLite saying the database file is damaged or not a database."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.DatabaseError) and code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text
    )


def check(path: Path) -> str | None:
    """None when the outbox at `path` is sound (or absent); else what is wrong with it."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        return str(exc)
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def quarantine(path: Path, reason: str) -> Quarantine:
    """Move the outbox at `path` aside, salvage it into a fresh one there, record the alert."""
    folder = path.parent / QUARANTINE_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    kept = folder / f"{path.stem}-{stamp}{path.suffix}"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{kept}{suffix}")
    Path(f"{kept}-shm").unlink(missing_ok=True)  # memory of the dead process, never data
    previous = len(list(folder.glob(f"{path.stem}-*{path.suffix}")))
    rows, events, last_seq, next_seq = _salvage(kept, path, epoch=previous * SEQ_EPOCH + 1)
    record = Quarantine(time.time(), str(kept), reason, rows, events, last_seq, next_seq)
    with (folder / ALERTS_FILE).open("a", encoding="utf-8") as alerts:
        alerts.write(json.dumps(asdict(record)) + "\n")
        alerts.flush()
        os.fsync(alerts.fileno())
    log.error("%s", record.alert())
    return record


def history(state_dir: Path) -> list[Quarantine]:
    """Every quarantine recorded in `state_dir`, oldest first (unreadable lines skipped)."""
    path = state_dir / QUARANTINE_DIR / ALERTS_FILE
    found: list[Quarantine] = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, TypeError):
                found.append(Quarantine(**json.loads(line)))
    return found


def _salvage(kept: Path, new: Path, epoch: int) -> tuple[int, int, int | None, int]:
    """Copy every readable row of `kept` into a fresh outbox at `new`; (rows, events, last, next).

    Read from a scratch copy: opening the kept file itself would replay and checkpoint its
    WAL into it, and the forensic copy must stay as it was found.
    """
    scratch = kept.with_name(kept.name + ".salvage")
    fresh = sqlite3.connect(new, isolation_level=None)
    try:
        fresh.execute("PRAGMA journal_mode=WAL")
        migrate(fresh)
        copied: dict[str, int] = {}
        counter: int | None = None
        try:
            for suffix in ("", "-wal"):
                if Path(f"{kept}{suffix}").exists():
                    shutil.copyfile(f"{kept}{suffix}", f"{scratch}{suffix}")
            old = sqlite3.connect(scratch, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            log.error("quarantined outbox %s cannot be read at all: %s", kept, exc)
        else:
            try:
                fresh.execute("BEGIN IMMEDIATE")
                for table in _tables(fresh):
                    copied[table] = _copy_table(old, fresh, table)
                counter = _old_counter(old)
                fresh.execute("COMMIT")
            finally:
                old.close()
        last_seq, next_seq = _continue_at(fresh, counter, epoch)
        fresh.execute(
            "INSERT INTO meta VALUES ('next_seq', ?) ON CONFLICT(key) DO UPDATE SET value = ?",
            (str(next_seq), str(next_seq)),
        )
        destroyed = _destroyed(fresh, counter)
        if destroyed:
            # Counted like any other loss, so heartbeats report it and seq gaps add up.
            fresh.execute(
                "INSERT INTO losses VALUES ('outbox_corrupt', ?) "
                "ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
                (destroyed,),
            )
    finally:
        fresh.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    return sum(copied.values()), copied.get("outbox", 0), last_seq, next_seq


def _tables(conn: sqlite3.Connection) -> list[str]:
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return [name for (name,) in conn.execute(query)]


def _copy_table(old: sqlite3.Connection, fresh: sqlite3.Connection, table: str) -> int:
    """Copy `table` by rowid, a page at a time; around a damaged page, row by row."""
    try:
        columns = [row[1] for row in old.execute(f'PRAGMA table_info("{table}")')]
    except sqlite3.DatabaseError:
        return 0
    if not columns:
        return 0  # the old file predates this table
    names = ", ".join(f'"{c}"' for c in columns)
    select = f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?'
    insert = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    copied, after, limit, skips, step = 0, -(2**63), SALVAGE_PAGE_ROWS, 0, 1
    while skips <= SALVAGE_MAX_SKIPS:
        try:
            rows = old.execute(select, (after, limit)).fetchall()
        except sqlite3.DatabaseError:
            if limit > 1:
                limit = max(1, limit // 8)  # close in on the damaged page
                continue
            # The very next row is unreadable: step over it, further each time.
            skips += 1
            after = max(after, 0) + step
            step *= 2
            continue
        if not rows:
            break
        fresh.executemany(insert, [row[1:] for row in rows])
        copied += len(rows)
        after, limit, step = rows[-1][0], SALVAGE_PAGE_ROWS, 1
    return copied


def _destroyed(fresh: sqlite3.Connection, counter: int | None) -> int:
    """Unsynced events the damage took: holes in the salvaged backlog, and its lost tail.

    The backlog is one run of seqs (rows leave oldest first), so a hole not explained by a
    dead letter is a row that was on a damaged page. A hole left by a byte-cap drop counts
    here too: an over-count, never an under-count. Without the counter the tail is unknown.
    """
    low, high, rows = fresh.execute("SELECT min(seq), max(seq), count(*) FROM outbox").fetchone()
    if not rows:
        return 0
    (dead,) = fresh.execute(
        "SELECT count(*) FROM dead_letter WHERE seq BETWEEN ? AND ?", (low, high)
    ).fetchone()
    holes = max(0, int(high) - int(low) + 1 - int(rows) - int(dead))
    tail = counter - 1 - int(high) if counter is not None and counter - 1 > high else 0
    return holes + tail


def _old_counter(old: sqlite3.Connection) -> int | None:
    with contextlib.suppress(sqlite3.DatabaseError, ValueError, TypeError):
        row = old.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        if row is not None:
            return int(row[0])
    return None


def _continue_at(
    conn: sqlite3.Connection, counter: int | None, epoch: int
) -> tuple[int | None, int]:
    """(last seq the old file provably issued, next seq for the fresh one).

    Only the old meta counter proves the last seq: rows cannot, since the newest ones may be
    the unreadable ones (and may have reached the cloud before their ack was lost). Without
    the counter the fresh outbox starts a new epoch, above every salvaged row.
    """
    top = 0
    for table in ("outbox", "dead_letter"):
        (found,) = conn.execute(f"SELECT max(seq) FROM {table}").fetchone()
        top = max(top, int(found or 0))
    if counter is not None and counter > top:
        return counter - 1, counter
    return None, max(epoch, top + 1)
