"""SQL text and row mapping of the PostgreSQL backend's fleet and admin queries."""

from typing import Any

import asyncpg
import orjson

from cloud.storage.base import AgentDetail, HeartbeatRecord, StoreSummary

# One page of stores: the keyset walks the stores primary key and the LATERAL aggregates only
# the agents of the stores on the page, so a page costs the same at 100 or 100,000 stores.
STORE_SUMMARY = """
SELECT s.store_id, s.created_at, a.agents, a.last_heartbeat_at, a.backlog_events,
       a.oldest_unsynced_age_s,
       (SELECT coalesce(sum(events), 0) FROM event_counts c WHERE c.store_id = s.store_id)
           AS events_total
FROM stores s CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS agents,
           max(heartbeat_at) AS last_heartbeat_at,
           coalesce(sum(backlog_events) FILTER (WHERE revoked_at IS NULL), 0) AS backlog_events,
           max(oldest_unsynced_age_s) FILTER (WHERE revoked_at IS NULL) AS oldest_unsynced_age_s
    FROM agents WHERE agents.store_id = s.store_id
) a
"""
AGENT_COLUMNS = (
    "agent_id, enrolled_at, revoked_at, agent_info, events_total, last_seq, last_event_at,"
    " heartbeat, heartbeat_at, backlog_events, oldest_unsynced_age_s"
)
# The cursor below which no row can still appear (migrations/0002_events.sql on `cursor`):
# the oldest transaction open in this statement's snapshot, else the snapshot's xmax. The
# snapshot spans the whole server, so open transactions that pg_stat_activity shows in
# *other* databases are left out: they cannot write our events. An xid that cannot be
# placed (its transaction ended since the snapshot) is kept, which only holds rows back.
VISIBLE_HORIZON = """(
    SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))::text::bigint * {shift}
    FROM pg_snapshot_xip(pg_current_snapshot()) AS x
    WHERE x::xid NOT IN (
        SELECT backend_xid FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
    )
)"""


def summary_from_row(row: asyncpg.Record) -> StoreSummary:
    """A `STORE_SUMMARY` row as a record."""
    return StoreSummary(
        store_id=row["store_id"],
        created_at=row["created_at"],
        agents=row["agents"],
        last_heartbeat_at=row["last_heartbeat_at"],
        backlog_events=int(row["backlog_events"]),
        oldest_unsynced_age_s=row["oldest_unsynced_age_s"],
        events_total=int(row["events_total"]),
    )


def agent_from_row(row: asyncpg.Record) -> AgentDetail:
    """An `AGENT_COLUMNS` row as a record."""
    heartbeat = None
    if row["heartbeat"] is not None:
        heartbeat = HeartbeatRecord(
            row["heartbeat_at"],
            row["backlog_events"],
            row["oldest_unsynced_age_s"],
            orjson.loads(row["heartbeat"]),
        )
    return AgentDetail(
        agent_id=row["agent_id"],
        enrolled_at=row["enrolled_at"],
        revoked_at=row["revoked_at"],
        agent_info=orjson.loads(row["agent_info"]),
        events_total=row["events_total"],
        last_seq=row["last_seq"],
        last_event_at=row["last_event_at"],
        heartbeat=heartbeat,
    )


class Params:
    """Positional parameters ($1, $2, …) collected while a WHERE clause is built."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        """Append `value`; its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"
