"""Batch ingest: COPY into a per-connection staging table, then one statement that dedupes.

That statement inserts the batch's ids into `event_ids` with ON CONFLICT DO NOTHING (the
permanent dedupe), stores the events whose ids were new, bumps the per-store/kind counts and
the agent's totals, and returns the batch positions that were new. Everything else in the
batch is a duplicate. One transaction per batch.

A live fleet mostly sends batches of one to a few events (an agent sends as soon as it
has something). For those the COPY's extra round trips (BEGIN, COPY, COMMIT) cost more than
the rows, so up to SMALL_BATCH events go as arrays in the same statement instead: one round
trip, its own transaction.
"""

from collections.abc import Sequence
from datetime import datetime

from cloud.storage.base import AgentIdentity, EventRow
from cloud.storage.postgres._types import Conn

# Bits of the cursor taken by the position in the batch (xid << 12 | position): batches are
# at most protocol.constants.MAX_BATCH_EVENTS = 1,000 events, below 4,096.
CURSOR_SHIFT = 4096
# Batches up to this many events skip the COPY (see the module docstring).
SMALL_BATCH = 32

# ON COMMIT DELETE ROWS: the staging rows vanish with the transaction, committed or not, so a
# connection returned to the pool never carries a half batch into the next one.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    ord          integer NOT NULL,
    event_id     uuid NOT NULL,
    seq          bigint NOT NULL,
    device_id    text NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    occurred_at  timestamptz NOT NULL,
    body         text NOT NULL
) ON COMMIT DELETE ROWS
"""
STAGING_COLUMNS = ("ord", "event_id", "seq", "device_id", "kind", "occurred_at", "body")

# DISTINCT ON keeps the first copy of an id repeated inside the batch; ids go into event_ids
# sorted, so two batches sharing ids (a retry racing its original on another replica) take
# their row locks in the same order and wait for each other instead of deadlocking. The
# loser of that wait sees the winner's committed id and reports a duplicate.
_INGEST = """
WITH batch AS MATERIALIZED (
    SELECT DISTINCT ON (event_id) ord, event_id, seq, device_id, kind, occurred_at, body
    FROM {source} ORDER BY event_id, ord
), fresh AS (
    INSERT INTO event_ids (event_id) SELECT event_id FROM batch ORDER BY event_id
    ON CONFLICT DO NOTHING RETURNING event_id
), new AS MATERIALIZED (
    SELECT b.* FROM batch b JOIN fresh USING (event_id)
), stored AS (
    INSERT INTO events (cursor, event_id, agent_id, store_id, seq, device_id, kind,
                        occurred_at, received_at, body)
    SELECT pg_current_xact_id()::text::bigint * {shift} + ord, event_id, $1, $2, seq,
           device_id, kind, occurred_at, $3, body
    FROM new ORDER BY ord
), counted AS (
    INSERT INTO event_counts AS c (store_id, kind, events)
    SELECT $2, kind, count(*) FROM new GROUP BY kind ORDER BY kind
    ON CONFLICT (store_id, kind) DO UPDATE SET events = c.events + excluded.events
), totals AS (
    UPDATE agents a SET events_total = a.events_total + t.n,
        last_seq = greatest(coalesce(a.last_seq, 0), t.max_seq), last_event_at = $3
    FROM (SELECT count(*) AS n, max(seq) AS max_seq FROM new) t
    WHERE a.agent_id = $1 AND t.n > 0
)
SELECT ord FROM new
"""
INGEST = _INGEST.format(source="ingest_staging", shift=CURSOR_SHIFT)
INGEST_SMALL = _INGEST.format(
    source="unnest($4::integer[], $5::uuid[], $6::bigint[], $7::text[], $8::text[],"
    " $9::timestamptz[], $10::text[])"
    " AS s(ord, event_id, seq, device_id, kind, occurred_at, body)",
    shift=CURSOR_SHIFT,
)


async def ingest_batch(
    conn: Conn, agent: AgentIdentity, rows: Sequence[EventRow], received_at: datetime
) -> list[bool]:
    """Store one batch in one transaction; per row True = new, False = duplicate."""
    records = [
        (ord_, row.event_id, row.seq, row.device_id, row.kind, row.occurred_at, row.body.decode())
        for ord_, row in enumerate(rows)
    ]
    if len(records) <= SMALL_BATCH:
        columns = [list(column) for column in zip(*records, strict=True)]
        new = await conn.fetch(INGEST_SMALL, agent.agent_id, agent.store_id, received_at, *columns)
    else:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "ingest_staging", records=records, columns=STAGING_COLUMNS
            )
            new = await conn.fetch(INGEST, agent.agent_id, agent.store_id, received_at)
    fresh = {ord_ for (ord_,) in new}
    return [ord_ in fresh for ord_ in range(len(rows))]
