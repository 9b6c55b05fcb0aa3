"""Outbox schema and its migrations, keyed on PRAGMA user_version."""

import sqlite3
from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    # seq is the rowid: appends go to the end of the b-tree whatever the backlog size
    # (research/perf.md: random keys fall to 27 % of the rate at 1M rows, ordered keys do not).
    db.table("outbox").create(
        {
            "seq": int,
            "event_id": str,
            "kind": str,
            "droppable": int,
            "created_at": float,
            "body": bytes,
        },
        pk="seq",
        not_null={"event_id", "kind", "droppable", "created_at", "body"},
    )
    # Finds the oldest droppable row without scanning kept ones when the byte cap is hit.
    db.execute("CREATE INDEX outbox_droppable ON outbox(seq) WHERE droppable = 1")
    db.table("dead_letter").create(
        {
            "seq": int,
            "event_id": str,
            "kind": str,
            "reason": str,
            "rejected_at": float,
            "body": bytes,
        },
        pk="seq",
        not_null={"event_id", "kind", "reason", "rejected_at", "body"},
    )
    db.table("losses").create({"reason": str, "count": int}, pk="reason", not_null={"count"})
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})


def _v2(db: sqlite_utils.Database) -> None:
    # The coupon single-use ledger lives beside the outbox so a redemption's ledger row and
    # its coupon.redeemed event commit in one transaction (agent/coupons/ledger.py): no crash
    # can leave one without the other. One row per single-use coupon redeemed in this store.
    db.execute(
        """
        CREATE TABLE coupon_ledger (
            coupon_id      INTEGER PRIMARY KEY,
            campaign_id    INTEGER NOT NULL,
            redemption_id  TEXT NOT NULL,
            mode           TEXT NOT NULL,
            value_minor    INTEGER NOT NULL,
            device_id      TEXT NOT NULL,
            staff_id       TEXT,
            redeemed_at    REAL NOT NULL,
            valid_to       INTEGER NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX coupon_ledger_expiry ON coupon_ledger(valid_to)")


def _v3(db: sqlite_utils.Database) -> None:
    # Idempotent capture: a caller that may capture the same fact twice (a crash between its
    # capture and its own bookkeeping) names it; the key commits with the event, so a second
    # capture finds it and appends nothing (no duplicate, no seq gap). Pruned by age.
    db.table("capture_keys").create(
        {"key": str, "seq": int, "created_at": float},
        pk="key",
        not_null={"seq", "created_at"},
    )
    db.execute("CREATE INDEX capture_keys_age ON capture_keys(created_at)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the latest version in one transaction; return that version."""
    db = sqlite_utils.Database(conn)
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with conn:
            step(db)
            conn.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)
