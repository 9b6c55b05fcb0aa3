"""Synchronous outbox operations; only ever called from the outbox's own thread."""

import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from agent.outbox.records import (
    AppendResult,
    Identity,
    OutboxStats,
    PendingEvent,
    StoredEvent,
)
from agent.outbox.schema import migrate
from protocol.constants import DROPPABLE_KINDS

log = logging.getLogger(__name__)

# A WAL file above this is truncated back to it after a checkpoint (SQLite pragma docs).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# Checkpoints normally run from the background checkpointer; this is the safety net if it
# stalls, so the WAL stays bounded (research/perf.md: it grew to 861 MB without one).
WAL_AUTOCHECKPOINT_PAGES = 16384
# Rejected events kept for inspection; past this the oldest go, counted as a loss.
DEAD_LETTER_MAX_ROWS = 100_000
# Idempotency keys are kept this long: longer than any caller waits before re-capturing the
# same fact (the print queue re-reports unmarked outcomes at the agent's next start).
CAPTURE_KEY_RETENTION_S = 30 * 24 * 3600.0
CAPTURE_KEY_PRUNE_EVERY_S = 3600.0  # pruned at open and then at most this often


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open `path` in WAL mode with the durability level asked for."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute("PRAGMA busy_timeout=5000")
    # Debian builds SQLite with secure_delete on: every acked row's page would be zeroed and
    # written again. FAST zeroes only where that costs no extra I/O (SQLite pragma docs).
    conn.execute("PRAGMA secure_delete=FAST")
    return conn


class OutboxStore:
    """The outbox tables behind one connection; not thread-safe by design (one writer)."""

    def __init__(
        self, path: Path, identity: Identity, max_bytes: int, synchronous: str = "FULL"
    ) -> None:
        self.path = path
        self.identity = identity
        self.max_bytes = max_bytes
        self.synchronous = synchronous
        self.conn = connect(path, synchronous)
        migrate(self.conn)
        self.conn.execute("BEGIN IMMEDIATE")
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        if row is None:
            self.conn.execute("INSERT INTO meta VALUES ('next_seq', '1')")
        self.conn.execute("COMMIT")
        self.next_seq = int(row[0]) if row else 1
        count, size = self.conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM outbox"
        ).fetchone()
        self.count: int = count
        self.bytes: int = size
        self.over_cap = False
        self._keys_pruned_at = 0.0
        self.conn.execute("BEGIN IMMEDIATE")
        self._prune_keys(time.time())
        self.conn.execute("COMMIT")

    # -- writes -----------------------------------------------------------------------------

    def append_many(
        self, pending: Sequence[PendingEvent], acked: Sequence[int] = ()
    ) -> list[AppendResult]:
        """Commit all of `pending` in one transaction (group commit), applying the byte cap.

        Rows in `acked` (delivered) are deleted in the same transaction: a drain's ack then
        costs the captures waiting with it no fsync of its own.
        """
        now = time.time()
        rows: list[tuple[int, str, str, int, float, bytes]] = []
        results: list[AppendResult] = []
        dropped_new = 0
        keys: list[tuple[str, int, float]] = []
        seen: dict[str, int] = {}  # keys committed by this same transaction
        # This loop holds the GIL the capturing event loop needs: per-event work is kept to
        # locals and one tuple (docs/BENCHMARKS.md "Profiling").
        execute, max_bytes = self.conn.execute, self.max_bytes
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if acked:
                self._delete_returning_bytes(acked)
            for event in pending:
                key = event.idempotency_key
                if key is not None:
                    earlier = seen.get(key)
                    if earlier is None:
                        row = execute(
                            "SELECT seq FROM capture_keys WHERE key = ?", (key,)
                        ).fetchone()
                        earlier = row[0] if row else None
                    if earlier is not None:
                        results.append(AppendResult(seq=earlier, duplicate=True))
                        continue
                guard = event.guard
                if guard is not None and execute(guard.sql, guard.params).rowcount != 1:
                    # A refusal, not a loss: the caller learns it from the result and records
                    # what happened instead (e.g. coupon.rejected "already redeemed here").
                    results.append(AppendResult(seq=None, dropped=guard.refused))
                    continue
                seq, kind = self.next_seq, event.kind
                body = b"%b%d%b" % (event.head, seq, event.tail)
                size = len(body)
                droppable = kind in DROPPABLE_KINDS
                if self.bytes + size > max_bytes:
                    self._make_room(self.bytes + size - max_bytes)
                    if self.bytes + size > max_bytes:
                        if droppable:
                            # Nothing older may go: the newest scan is the one dropped.
                            dropped_new += 1
                            results.append(AppendResult(seq=None, dropped="outbox_full"))
                            continue
                        self._alarm_over_cap()
                self.next_seq = seq + 1
                rows.append((seq, event.event_id, kind, droppable, now, body))
                if key is not None:
                    keys.append((key, seq, now))
                    seen[key] = seq
                self.count += 1
                self.bytes += size
                results.append(AppendResult(seq))
            if rows:
                self.conn.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)", rows)
                if keys:
                    self.conn.executemany("INSERT INTO capture_keys VALUES (?, ?, ?)", keys)
                self.conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(self.next_seq),)
                )
            if now - self._keys_pruned_at >= CAPTURE_KEY_PRUNE_EVERY_S:
                self._prune_keys(now)
            if dropped_new:
                self._count_loss("outbox_full", dropped_new)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback_and_reload()
            raise
        return results

    def ack(self, seqs: Sequence[int]) -> int:
        """Delete rows the cloud answered accepted/duplicate for; return how many went."""
        if not seqs:
            return 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            freed = self._delete_returning_bytes(seqs)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback_and_reload()
            raise
        return freed

    def dead_letter(self, rejected: Sequence[tuple[int, str]]) -> None:
        """Move rejected rows, with the cloud's reason, to the dead-letter table."""
        if not rejected:
            return
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT OR REPLACE INTO dead_letter "
                "SELECT seq, event_id, kind, ?, ?, body FROM outbox WHERE seq = ?",
                [(reason[:500], now, seq) for seq, reason in rejected],
            )
            self._delete_returning_bytes([seq for seq, _ in rejected])
            overflow = self.conn.execute(
                "DELETE FROM dead_letter WHERE seq IN (SELECT seq FROM dead_letter "
                "ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                (DEAD_LETTER_MAX_ROWS,),
            ).rowcount
            if overflow:
                self._count_loss("dead_letter_overflow", overflow)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback_and_reload()
            raise

    def count_loss(self, reason: str, count: int = 1) -> None:
        """Record events lost before reaching the outbox (a device flood, a bad frame…)."""
        self.conn.execute("BEGIN IMMEDIATE")
        self._count_loss(reason, count)
        self.conn.execute("COMMIT")

    # -- reads ------------------------------------------------------------------------------

    def read_batch(self, max_events: int, max_bytes: int, after: int = 0) -> list[StoredEvent]:
        """Oldest rows with seq > `after`, at most `max_events` and about `max_bytes` (≥ 1 row)."""
        return read_batch(self.conn, max_events, max_bytes, after)

    def stats(self) -> OutboxStats:
        """Backlog size, oldest unsynced row, dead letters and loss counters."""
        oldest = self.conn.execute("SELECT created_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
        dead = self.conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
        losses = dict(self.conn.execute("SELECT reason, count FROM losses").fetchall())
        return OutboxStats(
            backlog_events=self.count,
            backlog_bytes=self.bytes,
            oldest_created_at=oldest[0] if oldest else None,
            dead_letters=dead,
            next_seq=self.next_seq,
            losses=losses,
            over_cap=self.over_cap,
        )

    def close(self) -> None:
        """Checkpoint what can be and close the connection."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            self.conn.close()

    # -- internals --------------------------------------------------------------------------

    def _make_room(self, needed: int) -> None:
        freed = dropped = 0
        while freed < needed:
            # Estimate rows from the mean row size so a full outbox drops in few statements.
            mean = max(1, self.bytes // max(1, self.count))
            limit = max(1, min(10_000, (needed - freed) // mean + 1))
            sizes = self.conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE droppable = 1 "
                "ORDER BY seq LIMIT ?) RETURNING length(body)",
                (limit,),
            ).fetchall()
            if not sizes:
                break
            dropped += len(sizes)
            freed += sum(size for (size,) in sizes)
        if dropped:
            self.count -= dropped
            self.bytes -= freed
            self._count_loss("outbox_full", dropped)
            log.warning("outbox at its cap: dropped %d oldest scans (%d bytes)", dropped, freed)

    def _alarm_over_cap(self) -> None:
        if not self.over_cap:
            log.error(
                "outbox over its %d-byte cap with events that are never dropped; keeping them",
                self.max_bytes,
            )
        self.over_cap = True

    def _delete_returning_bytes(self, seqs: Sequence[int]) -> int:
        freed = deleted = 0
        # Acks come in runs of consecutive seqs: one range DELETE per run, not one per row.
        for first, last in _runs(sorted(seqs)):
            sizes = self.conn.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ? RETURNING length(body)",
                (first, last),
            ).fetchall()
            deleted += len(sizes)
            freed += sum(size for (size,) in sizes)
        self.count -= deleted
        self.bytes -= freed
        if self.over_cap and self.bytes <= self.max_bytes:
            self.over_cap = False
        return deleted

    def _prune_keys(self, now: float) -> None:
        self.conn.execute(
            "DELETE FROM capture_keys WHERE created_at < ?", (now - CAPTURE_KEY_RETENTION_S,)
        )
        self._keys_pruned_at = now

    def _count_loss(self, reason: str, count: int) -> None:
        self.conn.execute(
            "INSERT INTO losses VALUES (?, ?) "
            "ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
            (reason, count),
        )

    def _rollback_and_reload(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.next_seq = int(
            self.conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        )
        self.count, self.bytes = self.conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM outbox"
        ).fetchone()


def read_batch(
    conn: sqlite3.Connection, max_events: int, max_bytes: int, after: int = 0
) -> list[StoredEvent]:
    """Oldest rows with seq > `after`, at most `max_events` and about `max_bytes` (≥ 1 row)."""
    batch: list[StoredEvent] = []
    total = 0
    cursor = conn.execute(
        "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, max_events)
    )
    for seq, body in cursor:
        if batch and total + len(body) > max_bytes:
            break
        batch.append(StoredEvent(seq, body))
        total += len(body) + 1
    cursor.close()
    return batch


def _runs(ordered: Sequence[int]) -> list[tuple[int, int]]:
    """Split sorted ints into (first, last) runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for value in ordered:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
