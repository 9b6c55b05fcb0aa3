"""SQL text, row mapping and the read-side queries (stats, conflicts) of the coupon tables."""

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from cloud.storage._sqlite_sql import from_us, maybe_dt
from cloud.storage.coupon_records import (
    CampaignRecord,
    CampaignStats,
    ConflictRecord,
    CouponHold,
    CouponKeyRecord,
    RedemptionRecord,
    StoreCouponStats,
)

CAMPAIGN_COLUMNS = (
    "campaign_id, name, currency, max_offline_value, valid_from, valid_to, stores, created_at"
)
# `last_valid_to`: how long a retired key must stay in agents' keyrings.
KEY_COLUMNS = (
    "k.key_id, k.campaign_id, k.public_key, k.created_at, k.retired_at,"
    " (SELECT max(c.valid_to) FROM coupons c WHERE c.key_id = k.key_id)"
)
HOLD_COLUMNS = "store_id, redemption_id, agent_id, held_at, via"
REDEMPTION_COLUMNS = (
    "redemption_id, event_id, coupon_id, campaign_id, store_id, agent_id, value_minor, mode,"
    " staff_id, occurred_at, received_at"
)
INSERT_REDEMPTION = (
    "INSERT INTO coupon_redemptions (redemption_id, event_id, coupon_id, campaign_id, store_id,"
    " agent_id, value_minor, single_use, mode, staff_id, occurred_at, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (redemption_id) DO NOTHING"
)


def stores_json(stores: Sequence[str] | None) -> str | None:
    """A store list as stored: a sorted JSON array, or NULL for every store."""
    return None if stores is None else orjson.dumps(sorted(set(stores))).decode()


def stores_from_json(value: str | None) -> tuple[str, ...] | None:
    """The inverse of `stores_json`."""
    return None if value is None else tuple(orjson.loads(value))


def key_from_row(row: Sequence[Any]) -> CouponKeyRecord:
    """A `KEY_COLUMNS` row as a record."""
    key_id, campaign_id, public_key, created_at, retired_at, last_valid_to = row
    return CouponKeyRecord(
        key_id=key_id,
        campaign_id=campaign_id,
        public_key=bytes(public_key),
        created_at=from_us(created_at),
        retired_at=maybe_dt(retired_at),
        last_valid_to=maybe_dt(last_valid_to),
    )


def campaign_from_row(row: Sequence[Any], keys: tuple[CouponKeyRecord, ...]) -> CampaignRecord:
    """A `CAMPAIGN_COLUMNS` row and its keys as a record."""
    campaign_id, name, currency, max_offline, valid_from, valid_to, stores, created_at = row
    return CampaignRecord(
        campaign_id=campaign_id,
        name=name,
        currency=currency,
        max_offline_value=max_offline,
        valid_from=from_us(valid_from),
        valid_to=from_us(valid_to),
        stores=stores_from_json(stores),
        created_at=from_us(created_at),
        keys=keys,
    )


def hold_from_row(row: Sequence[Any]) -> CouponHold:
    """A `HOLD_COLUMNS` row as a record."""
    store_id, redemption_id, agent_id, held_at, via = row
    return CouponHold(store_id, redemption_id, agent_id, from_us(held_at), via)


def redemption_from_row(row: Sequence[Any]) -> RedemptionRecord:
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
        occurred_at=from_us(at),
        received_at=from_us(rx),
    )


def campaign_stats(conn: sqlite3.Connection, campaign_id: int) -> CampaignStats | None:
    """Every total of a campaign, read in one transaction so the parts add up to the whole."""
    conn.execute("BEGIN")  # one snapshot for all the counts below
    try:
        found = conn.execute(
            "SELECT 1 FROM coupon_campaigns WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
        if found is None:
            return None
        (issued,) = conn.execute(
            "SELECT count(*) FROM coupons WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
        (reserved,) = conn.execute(
            "SELECT count(*) FROM coupon_holds WHERE campaign_id = ? AND via = 'reservation'",
            (campaign_id,),
        ).fetchone()
        (redeemed,) = conn.execute(
            "SELECT count(DISTINCT coupon_id) FROM coupon_redemptions WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        (conflicts,) = conn.execute(
            "SELECT count(*) FROM coupon_conflicts WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()
        stores: dict[str, dict[str, Any]] = {}
        for store_id, count, value, offline in conn.execute(
            "SELECT store_id, count(*), sum(value_minor),"
            " sum(CASE WHEN mode = 'offline' THEN 1 ELSE 0 END)"
            " FROM coupon_redemptions WHERE campaign_id = ? GROUP BY store_id",
            (campaign_id,),
        ):
            stores[store_id] = {"redemptions": count, "value": value, "offline": offline}
        rejected: dict[str, dict[str, int]] = {}
        for store_id, reason, count in conn.execute(
            "SELECT store_id, reason, count(*) FROM coupon_rejections WHERE campaign_id = ?"
            " GROUP BY store_id, reason ORDER BY reason",
            (campaign_id,),
        ):
            rejected.setdefault(store_id, {})[reason] = count
    finally:
        conn.execute("COMMIT")
    parts = tuple(
        StoreCouponStats(
            store_id=store_id,
            redemptions=stores.get(store_id, {}).get("redemptions", 0),
            value_redeemed=stores.get(store_id, {}).get("value", 0),
            offline_redemptions=stores.get(store_id, {}).get("offline", 0),
            rejected=rejected.get(store_id, {}),
        )
        for store_id in sorted(set(stores) | set(rejected))
    )
    return CampaignStats(campaign_id, issued, reserved, redeemed, conflicts, parts)


def conflicts_page(
    conn: sqlite3.Connection,
    campaign_id: int | None,
    after: int | None,
    limit: int,
    newest_first: bool = False,
) -> list[ConflictRecord]:
    """Conflicts in cursor order (or reversed), each with all its redemptions, oldest first."""
    where, params = ["id > ?"], [after or 0]
    if campaign_id is not None:
        where.append("campaign_id = ?")
        params.append(campaign_id)
    rows = conn.execute(
        "SELECT id, coupon_id, campaign_id, detected_at, updated_at FROM coupon_conflicts"
        f" WHERE {' AND '.join(where)} ORDER BY id {'DESC' if newest_first else ''} LIMIT ?",
        (*params, limit),
    ).fetchall()
    out = []
    for cursor, coupon_id, camp, detected, updated in rows:
        redemptions = conn.execute(
            f"SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions WHERE coupon_id = ?"
            " ORDER BY occurred_at, redemption_id",
            (coupon_id,),
        ).fetchall()
        out.append(
            ConflictRecord(
                cursor=cursor,
                coupon_id=coupon_id,
                campaign_id=camp,
                detected_at=from_us(detected),
                updated_at=from_us(updated),
                redemptions=tuple(redemption_from_row(r) for r in redemptions),
            )
        )
    return out
