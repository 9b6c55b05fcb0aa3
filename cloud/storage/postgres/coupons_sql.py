"""Row mapping and the read-side queries (campaigns, stats, conflicts) of the PostgreSQL coupons.

Column lists are SQLite's (`cloud.storage._coupon_sql`), so both backends read the same
fields in the same order; only the values differ (timestamptz and text[] here).
"""

from collections.abc import Sequence

import asyncpg

from cloud.storage._coupon_sql import (
    CAMPAIGN_COLUMNS,
    KEY_COLUMNS,
    REDEMPTION_COLUMNS,
)
from cloud.storage.coupon_records import (
    CampaignRecord,
    CampaignStats,
    ConflictRecord,
    CouponHold,
    CouponKeyRecord,
    RedemptionRecord,
    StoreCouponStats,
)
from cloud.storage.postgres._types import Conn


def stores_array(stores: Sequence[str] | None) -> list[str] | None:
    """A store list as stored: sorted and without repeats, or NULL for every store."""
    return None if stores is None else sorted(set(stores))


def stores_tuple(value: Sequence[str] | None) -> tuple[str, ...] | None:
    """The inverse of `stores_array`."""
    return None if value is None else tuple(value)


def key_from_row(row: asyncpg.Record) -> CouponKeyRecord:
    """A `KEY_COLUMNS` row as a record."""
    key_id, campaign_id, public_key, created_at, retired_at, last_valid_to = row
    return CouponKeyRecord(key_id, campaign_id, public_key, created_at, retired_at, last_valid_to)


def campaign_from_row(row: asyncpg.Record, keys: tuple[CouponKeyRecord, ...]) -> CampaignRecord:
    """A `CAMPAIGN_COLUMNS` row and its keys as a record."""
    campaign_id, name, currency, max_offline, valid_from, valid_to, stores, created_at = row
    return CampaignRecord(
        campaign_id=campaign_id,
        name=name,
        currency=currency,
        max_offline_value=max_offline,
        valid_from=valid_from,
        valid_to=valid_to,
        stores=stores_tuple(stores),
        created_at=created_at,
        keys=keys,
    )


def hold_from_row(row: asyncpg.Record) -> CouponHold:
    """A `HOLD_COLUMNS` row as a record."""
    store_id, redemption_id, agent_id, held_at, via = row
    return CouponHold(store_id, redemption_id, agent_id, held_at, via)


def redemption_from_row(row: asyncpg.Record) -> RedemptionRecord:
    """A `REDEMPTION_COLUMNS` row as a record."""
    rid, event_id, coupon_id, campaign_id, store_id, agent_id, value, mode, staff, at, rx = row
    return RedemptionRecord(
        redemption_id=rid,
        event_id=event_id,
        coupon_id=coupon_id,
        campaign_id=campaign_id,
        store_id=store_id,
        agent_id=agent_id,
        value_minor=value,
        mode=mode,
        staff_id=staff,
        occurred_at=at,
        received_at=rx,
    )


async def campaign_keys(
    conn: Conn, campaign_ids: Sequence[int]
) -> dict[int, list[CouponKeyRecord]]:
    """The keys of each campaign, oldest first, in one query for all of them."""
    rows = await conn.fetch(
        f"SELECT {KEY_COLUMNS} FROM coupon_keys k WHERE k.campaign_id = ANY($1::bigint[])"
        " ORDER BY k.key_id",
        list(campaign_ids),
    )
    keys: dict[int, list[CouponKeyRecord]] = {}
    for row in rows:
        keys.setdefault(row[1], []).append(key_from_row(row))
    return keys


async def campaigns(conn: Conn, where: str = "", *args: object) -> list[CampaignRecord]:
    """The campaigns matching `where` (SQL over the campaign columns), oldest first."""
    rows = await conn.fetch(
        f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns {where} ORDER BY campaign_id", *args
    )
    keys = await campaign_keys(conn, [row[0] for row in rows])
    return [campaign_from_row(row, tuple(keys.get(row[0], ()))) for row in rows]


async def campaign_stats(conn: Conn, campaign_id: int) -> CampaignStats | None:
    """Every total of a campaign, read in one snapshot so the parts add up to the whole."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM coupons WHERE campaign_id = $1),"
            " (SELECT count(*) FROM coupon_holds WHERE campaign_id = $1"
            "   AND via = 'reservation'),"
            " (SELECT count(DISTINCT coupon_id) FROM coupon_redemptions WHERE campaign_id = $1),"
            " (SELECT count(*) FROM coupon_conflicts WHERE campaign_id = $1)"
            " FROM coupon_campaigns WHERE campaign_id = $1",
            campaign_id,
        )
        if totals is None:
            return None
        # sum(bigint) is numeric in PostgreSQL: cast back so the values are plain ints.
        redeemed = await conn.fetch(
            "SELECT store_id, count(*), sum(value_minor)::bigint,"
            " count(*) FILTER (WHERE mode = 'offline')"
            " FROM coupon_redemptions WHERE campaign_id = $1 GROUP BY store_id",
            campaign_id,
        )
        refused = await conn.fetch(
            "SELECT store_id, reason, count(*) FROM coupon_rejections WHERE campaign_id = $1"
            " GROUP BY store_id, reason ORDER BY reason",
            campaign_id,
        )
    stores = {row[0]: (row[1], row[2], row[3]) for row in redeemed}
    rejected: dict[str, dict[str, int]] = {}
    for store_id, reason, count in refused:
        rejected.setdefault(store_id, {})[reason] = count
    parts = tuple(
        StoreCouponStats(store_id, *stores.get(store_id, (0, 0, 0)), rejected.get(store_id, {}))
        for store_id in sorted(set(stores) | set(rejected))
    )
    issued, reserved, redeemed_coupons, conflicts = totals
    return CampaignStats(campaign_id, issued, reserved, redeemed_coupons, conflicts, parts)


async def conflicts_page(
    conn: Conn, campaign_id: int | None, after: int | None, limit: int, newest_first: bool = False
) -> list[ConflictRecord]:
    """Conflicts in cursor order (or reversed), each with all its redemptions, oldest first."""
    order = "DESC" if newest_first else "ASC"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT id, coupon_id, campaign_id, detected_at, updated_at FROM coupon_conflicts"
            " WHERE id > $1 AND ($2::bigint IS NULL OR campaign_id = $2)"
            f" ORDER BY id {order} LIMIT $3",
            after or 0,
            campaign_id,
            limit,
        )
        redemptions = await conn.fetch(
            f"SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions"
            " WHERE coupon_id = ANY($1::bigint[]) ORDER BY occurred_at, redemption_id",
            [row[1] for row in rows],
        )
    by_coupon: dict[int, list[RedemptionRecord]] = {}
    for row in redemptions:
        by_coupon.setdefault(row[2], []).append(redemption_from_row(row))
    return [
        ConflictRecord(
            cursor=cursor,
            coupon_id=coupon_id,
            campaign_id=camp,
            detected_at=detected,
            updated_at=updated,
            redemptions=tuple(by_coupon.get(coupon_id, ())),
        )
        for cursor, coupon_id, camp, detected, updated in rows
    ]
