"""Batch ingest: COPY into a per-connection staging table, then one statement that dedupes.

That statement inserts the batch's ids into `event_ids` with ON CONFLICT DO NOTHING (the
permanent dedupe), stores the events whose ids were new, bumps the per-store/kind counts and
the agent's totals, and returns the batch positions that were new. Everything else in the
batch is a duplicate. One round trip after the COPY; one transaction per batch.
"""

from collections.abc import Sequence
from datetime import datetime

from cloud.storage.base import AgentIdentity, EventRow
from cloud.storage.postgres._types import Conn

# Bits of the cursor taken by the position in the batch (xid << 12 | position): batches are
# at most protocol.constants.MAX_BATCH_EVENTS = 1,000 events, below 4,096.
CURSOR_SHIFT = 4096

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
INGEST = f"""
WITH batch AS MATERIALIZED (
    SELECT DISTINCT ON (event_id) ord, event_id, seq, device_id, kind, occurred_at, body
    FROM ingest_staging ORDER BY event_id, ord
), fresh AS (
    INSERT INTO event_ids (event_id) SELECT event_id FROM batch ORDER BY event_id
    ON CONFLICT DO NOTHING RETURNING event_id
), new AS MATERIALIZED (
    SELECT b.* FROM batch b JOIN fresh USING (event_id)
), stored AS (
    INSERT INTO events (cursor, event_id, agent_id, store_id, seq, device_id, kind,
                        occurred_at, received_at, body)
    SELECT pg_current_xact_id()::text::bigint * {CURSOR_SHIFT} + ord, event_id, $1, $2, seq,
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


async def ingest_batch(
    conn: Conn, agent: AgentIdentity, rows: Sequence[EventRow], received_at: datetime
) -> list[bool]:
    """Store one batch in one transaction; per row True = new, False = duplicate."""
    records = [
        (ord_, row.event_id, row.seq, row.device_id, row.kind, row.occurred_at, row.body.decode())
        for ord_, row in enumerate(rows)
    ]
    async with conn.transaction():
        await conn.copy_records_to_table("ingest_staging", records=records, columns=STAGING_COLUMNS)
        new = await conn.fetch(INGEST, agent.agent_id, agent.store_id, received_at)
    fresh = {ord_ for (ord_,) in new}
    return [ord_ in fresh for ord_ in range(len(rows))]
