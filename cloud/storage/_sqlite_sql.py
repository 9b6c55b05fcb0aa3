"""SQL text, transactions, time encoding and row mapping of the SQLite backend."""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cloud.errors import EnrollmentRefused
from cloud.storage.base import AgentDetail, HeartbeatRecord, StoreSummary

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# How long a statement waits for another process's write lock (e.g. `cloud enroll-code`
# beside `cloud serve`) before failing with "database is locked".
BUSY_TIMEOUT_S = 5.0

INSERT_EVENT = (
    "INSERT INTO events (event_id, agent_id, store_id, seq, device_id, kind, occurred_at,"
    " received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
STORE_SUMMARY = """
    SELECT s.store_id, s.created_at, s.events_total,
           SUM(CASE WHEN a.agent_id IS NOT NULL AND a.revoked_at IS NULL THEN 1 ELSE 0 END),
           MAX(a.heartbeat_at),
           SUM(CASE WHEN a.revoked_at IS NULL THEN a.backlog_events ELSE 0 END),
           MAX(CASE WHEN a.revoked_at IS NULL THEN a.oldest_unsynced_age_s END)
    FROM stores s LEFT JOIN agents a ON a.store_id = s.store_id
"""
AGENT_COLUMNS = (
    "agent_id, enrolled_at, revoked_at, agent_info, events_total, last_seq, last_event_at,"
    " heartbeat, heartbeat_at, backlog_events, oldest_unsynced_age_s"
)


def to_us(value: datetime) -> int:
    """Unix microseconds of an aware datetime, exactly (no float rounding)."""
    return (value - _EPOCH) // _US


def from_us(value: int) -> datetime:
    """The aware UTC datetime of unix microseconds."""
    return _EPOCH + timedelta(microseconds=value)


def maybe_dt(value: int | None) -> datetime | None:
    """`from_us` that passes None through."""
    return None if value is None else from_us(value)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: COMMIT on success, ROLLBACK on any exception."""
    # IMMEDIATE takes the write lock up front, so a concurrent writer waits on busy_timeout
    # instead of failing mid-transaction on a lock upgrade.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def filter_clauses(store_id: str | None, kind: str | None) -> tuple[list[str], list[Any]]:
    """WHERE fragments and parameters for the optional store and kind filters."""
    where: list[str] = []
    params: list[Any] = []
    if store_id is not None:
        where.append("store_id = ?")
        params.append(store_id)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    return where, params


def prefix_bound(prefix: str) -> str:
    """The least string above every string starting with `prefix` (ids are ASCII, < 0x7f)."""
    return prefix + "\x7f"


def refusal(conn: sqlite3.Connection, code_hash: str) -> EnrollmentRefused:
    """Why a code could not be spent: unknown, used or expired."""
    row = conn.execute(
        "SELECT used_at FROM enroll_codes WHERE code_hash = ?", (code_hash,)
    ).fetchone()
    if row is None:
        return EnrollmentRefused("unknown enrollment code", key="code_unknown")
    if row[0] is not None:
        return EnrollmentRefused("enrollment code already used", key="code_used")
    return EnrollmentRefused("enrollment code expired", key="code_expired")


def summary_from_row(row: Sequence[Any]) -> StoreSummary:
    """A `STORE_SUMMARY` row as a record."""
    store_id, created_at, events_total, agents, heartbeat_at, backlog, oldest = row
    return StoreSummary(
        store_id=store_id,
        created_at=from_us(created_at),
        agents=agents or 0,
        last_heartbeat_at=maybe_dt(heartbeat_at),
        backlog_events=backlog or 0,
        oldest_unsynced_age_s=oldest,
        events_total=events_total,
    )


def agent_from_row(row: Sequence[Any]) -> AgentDetail:
    """An `AGENT_COLUMNS` row as a record."""
    agent_id, enrolled, revoked, info, total, last_seq, last_event, hb, hb_at, backlog, oldest = row
    heartbeat = None
    if hb is not None:
        heartbeat = HeartbeatRecord(from_us(hb_at), backlog, oldest, orjson.loads(hb))
    return AgentDetail(
        agent_id=agent_id,
        enrolled_at=from_us(enrolled),
        revoked_at=maybe_dt(revoked),
        agent_info=orjson.loads(info),
        events_total=total,
        last_seq=last_seq,
        last_event_at=maybe_dt(last_event),
        heartbeat=heartbeat,
    )
