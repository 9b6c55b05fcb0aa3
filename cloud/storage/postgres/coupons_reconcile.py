"""Reconciliation of synced coupon events on PostgreSQL, inside the caller's transaction.

Concurrency, since any replica may reconcile any batch at any time:
- Redemptions and rejections are INSERT … ON CONFLICT DO NOTHING on their keys, so a
  replayed batch inserts nothing, even while the first copy is still uncommitted elsewhere
  (the second insert waits for the first to commit, then skips).
- A coupon's redemptions are counted under the row lock of its `coupon_holds` row, taken
  after this transaction inserted its own. Of two transactions inserting redemptions of one
  coupon, the one that locks second counts after the first committed and sees both: a
  double redemption makes exactly one conflict, never zero.
- Locks are taken in one order in every transaction (rejections by event id, then per
  coupon id its redemptions by redemption id and its hold, then the conflicts table), so
  overlapping batches wait for each other but never deadlock.
"""

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby

from cloud.storage.base import AgentIdentity
from cloud.storage.coupon_records import RedemptionRecord, RejectionRecord
from cloud.storage.postgres._types import Conn

_INSERT_REDEMPTION = (
    "INSERT INTO coupon_redemptions (redemption_id, event_id, coupon_id, campaign_id, store_id,"
    " agent_id, value_minor, single_use, mode, staff_id, occurred_at, received_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT (redemption_id) DO NOTHING RETURNING true"
)


async def reconcile(
    conn: Conn,
    agent: AgentIdentity,
    redemptions: Sequence[RedemptionRecord],
    rejections: Sequence[RejectionRecord],
    now: datetime,
) -> None:
    """Record `agent`'s coupon events idempotently; the caller holds the transaction."""
    if rejections:
        await conn.executemany(
            "INSERT INTO coupon_rejections (event_id, campaign_id, coupon_id, store_id, reason,"
            " occurred_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            [
                (j.event_id, j.campaign_id, j.coupon_id, agent.store_id, j.reason,
                 j.occurred_at)
                for j in sorted(rejections, key=lambda j: j.event_id)
            ],
        )  # fmt: skip
    flags = await _single_use(conn, {r.coupon_id for r in redemptions})
    conflicts: list[tuple[int, int]] = []
    # Batch order is kept within a coupon (sorted() is stable): it picks the holder.
    for coupon_id, group in groupby(
        sorted(redemptions, key=lambda r: r.coupon_id), key=lambda r: r.coupon_id
    ):
        conflict = await _reconcile_coupon(conn, agent, list(group), flags.get(coupon_id), now)
        if conflict is not None:
            conflicts.append((coupon_id, conflict))
    if conflicts:
        # Held to commit, so conflict ids (the listing cursor) are handed out in commit
        # order; readers (ACCESS SHARE) are not blocked. Conflicts are rare: the lock is too.
        await conn.execute("LOCK TABLE coupon_conflicts IN SHARE ROW EXCLUSIVE MODE")
        await conn.executemany(
            "INSERT INTO coupon_conflicts (coupon_id, campaign_id, detected_at, updated_at)"
            " VALUES ($1, $2, $3, $3) ON CONFLICT (coupon_id) DO UPDATE SET updated_at = $3",
            [(coupon_id, campaign_id, now) for coupon_id, campaign_id in conflicts],
        )


async def _single_use(conn: Conn, coupon_ids: set[int]) -> dict[int, bool]:
    if not coupon_ids:
        return {}
    rows = await conn.fetch(
        "SELECT coupon_id, single_use FROM coupons WHERE coupon_id = ANY($1::bigint[])",
        list(coupon_ids),
    )
    return {row[0]: row[1] for row in rows}


async def _reconcile_coupon(
    conn: Conn,
    agent: AgentIdentity,
    group: list[RedemptionRecord],
    issued_single_use: bool | None,
    now: datetime,
) -> int | None:
    """Insert one coupon's redemptions; the campaign of a conflict they make, else None."""
    inserted: list[RedemptionRecord] = []
    for r in sorted(group, key=lambda r: r.redemption_id):
        # The issued coupon's flag wins over the event's; an unknown coupon keeps the event's.
        single_use = r.single_use if issued_single_use is None else issued_single_use
        new = await conn.fetchval(
            _INSERT_REDEMPTION,
            r.redemption_id, r.event_id, r.coupon_id, r.campaign_id, agent.store_id,
            agent.agent_id, r.value_minor, single_use, r.mode, r.staff_id, r.occurred_at, now,
        )  # fmt: skip
        if new and single_use:
            inserted.append(r)
    if not inserted:
        return None
    # Redeemed offline before anyone reserved it: the first redemption synced (in batch
    # order) holds it, so an online reservation elsewhere is refused from now on.
    first = min(inserted, key=group.index)
    await conn.execute(
        "INSERT INTO coupon_holds (coupon_id, campaign_id, store_id, agent_id, redemption_id,"
        " held_at, via) VALUES ($1, $2, $3, $4, $5, $6, 'redemption')"
        " ON CONFLICT (coupon_id) DO NOTHING",
        first.coupon_id, first.campaign_id, agent.store_id, agent.agent_id, first.redemption_id,
        now,
    )  # fmt: skip
    await conn.execute(
        "SELECT 1 FROM coupon_holds WHERE coupon_id = $1 FOR UPDATE", first.coupon_id
    )
    # A new statement after the lock: its snapshot sees every redemption committed before.
    count = await conn.fetchval(
        "SELECT count(*) FROM coupon_redemptions WHERE coupon_id = $1 AND single_use",
        first.coupon_id,
    )
    return first.campaign_id if count > 1 else None
