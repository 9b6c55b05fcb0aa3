"""The store's single-use ledger: a table in the outbox file, claimed in the event's transaction.

`claim` returns the outbox Guard that writes the ledger row; the coupon.redeemed event it
guards is committed only if the row was new, so "already redeemed here" is decided by one
primary key, even between two devices presenting the same coupon at the same instant.
"""

import sqlite3
import time
from dataclasses import dataclass

from agent.outbox import Guard, Outbox

# Ledger rows outlive their coupon by this long, then go: an expired coupon is refused as
# "expired" before the ledger is asked, so older rows could only waste disk.
RETAIN_AFTER_EXPIRY_S = 7 * 24 * 3600
REFUSED = "already_redeemed_here"

_CLAIM = (
    "INSERT INTO coupon_ledger (coupon_id, campaign_id, redemption_id, mode, value_minor,"
    " device_id, staff_id, redeemed_at, valid_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (coupon_id) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A single-use coupon this store redeemed."""

    coupon_id: int
    redemption_id: str
    mode: str
    device_id: str
    redeemed_at: float


def claim(
    coupon_id: int,
    campaign_id: int,
    redemption_id: str,
    mode: str,
    value_minor: int,
    device_id: str,
    staff_id: str | None,
    valid_to: int,
) -> Guard:
    """The guard that records this redemption, refusing if the coupon is in the ledger."""
    params = (coupon_id, campaign_id, redemption_id, mode, value_minor, device_id, staff_id,
              time.time(), valid_to)  # fmt: skip
    return Guard(_CLAIM, params, refused=REFUSED)


async def lookup(outbox: Outbox, coupon_id: int) -> LedgerEntry | None:
    """The ledger row of `coupon_id`, or None when this store never redeemed it."""

    def read(conn: sqlite3.Connection) -> LedgerEntry | None:
        row = conn.execute(
            "SELECT coupon_id, redemption_id, mode, device_id, redeemed_at FROM coupon_ledger"
            " WHERE coupon_id = ?",
            (coupon_id,),
        ).fetchone()
        return None if row is None else LedgerEntry(*row)

    return await outbox.query(read)


async def prune(outbox: Outbox, now: float) -> int:
    """Delete rows of coupons expired more than RETAIN_AFTER_EXPIRY_S ago; how many went."""

    def delete(conn: sqlite3.Connection) -> int:
        with conn:
            return conn.execute(
                "DELETE FROM coupon_ledger WHERE valid_to < ?", (now - RETAIN_AFTER_EXPIRY_S,)
            ).rowcount

    return await outbox.query(delete)


async def count(outbox: Outbox) -> int:
    """Rows in the ledger."""

    def read(conn: sqlite3.Connection) -> int:
        (n,) = conn.execute("SELECT count(*) FROM coupon_ledger").fetchone()
        return int(n)

    return await outbox.query(read)
