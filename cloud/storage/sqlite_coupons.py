"""`CouponStorage` on the SQLite backend: the same file, connection and thread as `Storage`."""

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from cloud.storage._coupon_sql import (
    CAMPAIGN_COLUMNS,
    HOLD_COLUMNS,
    INSERT_REDEMPTION,
    KEY_COLUMNS,
    campaign_from_row,
    campaign_stats,
    conflicts_page,
    hold_from_row,
    key_from_row,
    stores_from_json,
    stores_json,
)
from cloud.storage._sqlite_sql import from_us, to_us, write
from cloud.storage.base import AgentIdentity
from cloud.storage.coupon_records import (
    CampaignRecord,
    CampaignStats,
    ConfigCampaign,
    ConflictRecord,
    CouponKeyRecord,
    CouponRecord,
    KeyPair,
    NewCampaign,
    NewCoupon,
    RedemptionRecord,
    RejectionRecord,
    ReserveOutcome,
    SigningKey,
)
from cloud.storage.sqlite import SqliteStorage


class SqliteCouponStorage:
    """Coupon tables of one `SqliteStorage`; every call is one transaction on its thread."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._thread = storage.thread

    async def create_campaign(
        self, campaign: NewCampaign, key: KeyPair, now: datetime
    ) -> CampaignRecord:
        """Insert the campaign and its first key together."""

        def work(conn: sqlite3.Connection) -> CampaignRecord:
            with write(conn):
                (campaign_id,) = conn.execute(
                    "INSERT INTO coupon_campaigns (name, currency, max_offline_value, valid_from,"
                    " valid_to, stores, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " RETURNING campaign_id",
                    (
                        campaign.name,
                        campaign.currency,
                        campaign.max_offline_value,
                        to_us(campaign.valid_from),
                        to_us(campaign.valid_to),
                        stores_json(campaign.stores),
                        to_us(now),
                    ),
                ).fetchall()[0]
                _insert_key(conn, campaign_id, key, now)
                record = _campaign(conn, campaign_id)
            assert record is not None
            return record

        return await self._thread.run(work)

    async def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""

        def work(conn: sqlite3.Connection) -> list[CampaignRecord]:
            rows = conn.execute(
                f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns ORDER BY campaign_id"
            ).fetchall()
            return [campaign_from_row(row, _keys(conn, row[0])) for row in rows]

        return await self._thread.run(work)

    async def get_campaign(self, campaign_id: int) -> CampaignRecord | None:
        """One campaign and its keys."""
        return await self._thread.run(lambda conn: _campaign(conn, campaign_id))

    async def rotate_key(
        self, campaign_id: int, key: KeyPair, now: datetime
    ) -> CouponKeyRecord | None:
        """Retire the active key, insert `key` as the new active one."""

        def work(conn: sqlite3.Connection) -> CouponKeyRecord | None:
            with write(conn):
                if _campaign(conn, campaign_id) is None:
                    return None
                conn.execute(
                    "UPDATE coupon_keys SET retired_at = ? WHERE campaign_id = ?"
                    " AND retired_at IS NULL",
                    (to_us(now), campaign_id),
                )
                key_id = _insert_key(conn, campaign_id, key, now)
                row = conn.execute(
                    f"SELECT {KEY_COLUMNS} FROM coupon_keys k WHERE key_id = ?", (key_id,)
                ).fetchone()
            return key_from_row(row)

        return await self._thread.run(work)

    async def signing_key(self, campaign_id: int) -> SigningKey | None:
        """The active private key of a campaign."""

        def work(conn: sqlite3.Connection) -> SigningKey | None:
            row = conn.execute(
                "SELECT key_id, private_key FROM coupon_keys WHERE campaign_id = ?"
                " AND retired_at IS NULL",
                (campaign_id,),
            ).fetchone()
            return None if row is None else SigningKey(row[0], campaign_id, bytes(row[1]))

        return await self._thread.run(work)

    async def issue_coupons(self, coupons: Sequence[NewCoupon], now: datetime) -> bool:
        """Insert all coupons or none; False when a random coupon id was already taken."""
        params = [
            (
                c.coupon_id,
                c.campaign_id,
                c.key_id,
                c.value_minor,
                int(c.single_use),
                stores_json(c.stores),
                to_us(c.valid_from),
                to_us(c.valid_to),
                c.token,
                to_us(now),
            )
            for c in coupons
        ]

        def work(conn: sqlite3.Connection) -> bool:
            try:
                with write(conn):
                    conn.executemany(
                        "INSERT INTO coupons (coupon_id, campaign_id, key_id, value_minor,"
                        " single_use, stores, valid_from, valid_to, token, issued_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        params,
                    )
            except sqlite3.IntegrityError:
                return False  # rolled back whole by write(): the caller draws new ids
            return True

        return await self._thread.run(work)

    async def get_coupon(self, coupon_id: int) -> CouponRecord | None:
        """One coupon and its holder."""

        def work(conn: sqlite3.Connection) -> CouponRecord | None:
            row = conn.execute(
                "SELECT coupon_id, campaign_id, key_id, value_minor, single_use, stores,"
                " valid_from, valid_to, token, issued_at FROM coupons WHERE coupon_id = ?",
                (coupon_id,),
            ).fetchone()
            if row is None:
                return None
            hold = conn.execute(
                f"SELECT {HOLD_COLUMNS} FROM coupon_holds WHERE coupon_id = ?", (coupon_id,)
            ).fetchone()
            coupon_id_, campaign_id, key_id, value, single, stores, start, end, token, at = row
            coupon = NewCoupon(
                coupon_id=coupon_id_,
                campaign_id=campaign_id,
                key_id=key_id,
                value_minor=value,
                single_use=bool(single),
                stores=stores_from_json(stores),
                valid_from=from_us(start),
                valid_to=from_us(end),
                token=token,
            )
            return CouponRecord(coupon, from_us(at), hold_from_row(hold) if hold else None)

        return await self._thread.run(work)

    async def config_campaigns(self, store_id: str, now: datetime) -> list[ConfigCampaign]:
        """Campaigns not yet ended; keys still able to verify a live coupon, oldest first."""
        now_us = to_us(now)

        def work(conn: sqlite3.Connection) -> list[ConfigCampaign]:
            rows = conn.execute(
                f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns WHERE valid_to > ?"
                " ORDER BY campaign_id",
                (now_us,),
            ).fetchall()
            out = []
            for row in rows:
                record = campaign_from_row(row, _keys(conn, row[0]))
                # A retired key whose coupons have all expired can verify nothing any more.
                keys = tuple(
                    k
                    for k in record.keys
                    if k.active or (k.last_valid_to is not None and k.last_valid_to > now)
                )
                here = record.stores is None or store_id in record.stores
                out.append(
                    ConfigCampaign(
                        campaign_id=record.campaign_id,
                        name=record.name,
                        currency=record.currency,
                        max_offline_value=record.max_offline_value,
                        valid_from=record.valid_from,
                        valid_to=record.valid_to,
                        redeemable_here=here,
                        keys=keys,
                    )
                )
            return out

        return await self._thread.run(work)

    async def reserve(
        self,
        coupon_id: int,
        campaign_id: int,
        redemption_id: str,
        agent: AgentIdentity,
        now: datetime,
    ) -> ReserveOutcome:
        """INSERT … ON CONFLICT DO NOTHING on the hold's primary key, then read the holder."""

        def work(conn: sqlite3.Connection) -> ReserveOutcome:
            with write(conn):
                row = conn.execute(
                    "SELECT single_use FROM coupons WHERE coupon_id = ? AND campaign_id = ?",
                    (coupon_id, campaign_id),
                ).fetchone()
                if row is None:
                    return ReserveOutcome("unknown")
                if not row[0]:
                    return ReserveOutcome("not_required")
                # The primary key makes this the whole race: one INSERT wins, fleet-wide.
                conn.execute(
                    "INSERT INTO coupon_holds (coupon_id, campaign_id, store_id, agent_id,"
                    " redemption_id, held_at, via) VALUES (?, ?, ?, ?, ?, ?, 'reservation')"
                    " ON CONFLICT (coupon_id) DO NOTHING",
                    (coupon_id, campaign_id, agent.store_id, agent.agent_id, redemption_id,
                     to_us(now)),
                )  # fmt: skip
                held = conn.execute(
                    f"SELECT {HOLD_COLUMNS} FROM coupon_holds WHERE coupon_id = ?", (coupon_id,)
                ).fetchone()
            hold = hold_from_row(held)
            # The store's own ledger arbitrates between its devices (docs/COUPONS.md).
            mine = hold.store_id == agent.store_id
            return ReserveOutcome("reserved" if mine else "already_redeemed", hold)

        return await self._thread.run(work)

    async def reconcile(
        self,
        agent: AgentIdentity,
        redemptions: Sequence[RedemptionRecord],
        rejections: Sequence[RejectionRecord],
        now: datetime,
    ) -> None:
        """Insert new redemptions and rejections; hold and conflict bookkeeping in one go."""
        now_us = to_us(now)

        def work(conn: sqlite3.Connection) -> None:
            with write(conn):
                for r in redemptions:
                    _reconcile_redemption(conn, agent, r, now_us)
                conn.executemany(
                    "INSERT INTO coupon_rejections (event_id, campaign_id, coupon_id, store_id,"
                    " reason, occurred_at) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    [
                        (j.event_id, j.campaign_id, j.coupon_id, agent.store_id, j.reason,
                         to_us(j.occurred_at))
                        for j in rejections
                    ],
                )  # fmt: skip

        await self._thread.run(work)

    async def campaign_stats(self, campaign_id: int) -> CampaignStats | None:
        """Totals per store, read in one transaction so they add up."""
        return await self._thread.run(lambda conn: campaign_stats(conn, campaign_id))

    async def list_conflicts(
        self, campaign_id: int | None, after: int | None, limit: int
    ) -> list[ConflictRecord]:
        """A page of conflicts with every redemption of each."""
        return await self._thread.run(lambda conn: conflicts_page(conn, campaign_id, after, limit))

    async def recent_conflicts(self, limit: int) -> list[ConflictRecord]:
        """The latest conflicts, read backwards on the primary key."""
        return await self._thread.run(
            lambda conn: conflicts_page(conn, None, None, limit, newest_first=True)
        )


def _reconcile_redemption(
    conn: sqlite3.Connection, agent: AgentIdentity, r: RedemptionRecord, now_us: int
) -> None:
    known = conn.execute(
        "SELECT single_use FROM coupons WHERE coupon_id = ?", (r.coupon_id,)
    ).fetchone()
    # The issued coupon's flag wins over the event's; an unknown coupon keeps the event's.
    single_use = bool(known[0]) if known is not None else r.single_use
    inserted = conn.execute(
        INSERT_REDEMPTION,
        (r.redemption_id, r.event_id, r.coupon_id, r.campaign_id, agent.store_id,
         agent.agent_id, r.value_minor, int(single_use), r.mode, r.staff_id,
         to_us(r.occurred_at), now_us),
    ).rowcount  # fmt: skip
    if not inserted or not single_use:
        return
    # Redeemed offline before anyone reserved it: the first redemption synced holds it, so
    # an online reservation elsewhere is refused from now on.
    conn.execute(
        "INSERT INTO coupon_holds (coupon_id, campaign_id, store_id, agent_id, redemption_id,"
        " held_at, via) VALUES (?, ?, ?, ?, ?, ?, 'redemption') ON CONFLICT (coupon_id) DO NOTHING",
        (r.coupon_id, r.campaign_id, agent.store_id, agent.agent_id, r.redemption_id, now_us),
    )
    (count,) = conn.execute(
        "SELECT count(*) FROM coupon_redemptions WHERE coupon_id = ? AND single_use = 1",
        (r.coupon_id,),
    ).fetchone()
    if count > 1:
        conn.execute(
            "INSERT INTO coupon_conflicts (coupon_id, campaign_id, detected_at, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (coupon_id) DO UPDATE SET updated_at = ?",
            (r.coupon_id, r.campaign_id, now_us, now_us, now_us),
        )


def _insert_key(conn: sqlite3.Connection, campaign_id: int, key: KeyPair, now: datetime) -> int:
    (key_id,) = conn.execute(
        "INSERT INTO coupon_keys (campaign_id, public_key, private_key, created_at)"
        " VALUES (?, ?, ?, ?) RETURNING key_id",
        (campaign_id, key.public_key, key.private_key, to_us(now)),
    ).fetchall()[0]
    return int(key_id)


def _keys(conn: sqlite3.Connection, campaign_id: int) -> tuple[CouponKeyRecord, ...]:
    rows = conn.execute(
        f"SELECT {KEY_COLUMNS} FROM coupon_keys k WHERE campaign_id = ? ORDER BY key_id",
        (campaign_id,),
    ).fetchall()
    return tuple(key_from_row(row) for row in rows)


def _campaign(conn: sqlite3.Connection, campaign_id: int) -> CampaignRecord | None:
    row = conn.execute(
        f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns WHERE campaign_id = ?", (campaign_id,)
    ).fetchone()
    return None if row is None else campaign_from_row(row, _keys(conn, campaign_id))
