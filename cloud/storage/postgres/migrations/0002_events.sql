-- The event log. docs/SCALING.md "Dedupe and partitions" explains the shape:
-- * event_ids is the permanent dedupe key, one narrow row per event ever accepted, never
--   partitioned and never pruned, so a retry years later is still a duplicate;
-- * events holds the payloads, range-partitioned by received_at (one partition per UTC day,
--   created ahead by maintenance), so retention is DROP TABLE of a whole day.
-- A UNIQUE(event_id) on events itself is impossible (a unique index on a partitioned table
-- must contain the partition key) and would die with each dropped partition anyway.

CREATE TABLE event_ids (
    event_id  uuid PRIMARY KEY
);

-- cursor = xid of the writing transaction * 4096 + position in the batch (batches are at
-- most 1,000 events). Readers list only rows below pg_snapshot_xmin, whose transactions have
-- all ended, so a page never skips a row that commits later with a smaller cursor, and ingest
-- needs no lock or sequence shared by all writers.
CREATE TABLE events (
    cursor       bigint NOT NULL,
    event_id     uuid NOT NULL,
    agent_id     text COLLATE "C" NOT NULL,
    store_id     text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    device_id    text NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    body         text NOT NULL
) PARTITION BY RANGE (received_at);

-- The admin queries: everything, by store (+kind), and by kind across the fleet, each in
-- cursor order.
CREATE INDEX events_cursor ON events (cursor);
CREATE INDEX events_store ON events (store_id, cursor);
CREATE INDEX events_store_kind ON events (store_id, kind, cursor);
CREATE INDEX events_kind ON events (kind, cursor);

-- Exact counts kept by ingest in the same transaction (and by retention when it drops a
-- day), so counting never scans the event log.
CREATE TABLE event_counts (
    store_id  text COLLATE "C" NOT NULL,
    kind      text COLLATE "C" NOT NULL,
    events    bigint NOT NULL,
    PRIMARY KEY (store_id, kind)
) WITH (fillfactor = 70);
CREATE INDEX event_counts_kind ON event_counts (kind);
