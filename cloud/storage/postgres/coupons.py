"""`CouponStorage` on PostgreSQL: the same pool, error translation and schema steps as `Storage`.

Atomicity across replicas comes from the database alone: the single-use race is the
primary key of `coupon_holds` (one INSERT … ON CONFLICT DO NOTHING wins, whichever replica
runs it), and reconciliation counts a coupon's redemptions under that row's lock
(`coupons_reconcile`), so two replicas syncing two redemptions of one coupon at once still
make exactly one conflict.
"""

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from cloud.storage._coupon_sql import HOLD_COLUMNS, KEY_COLUMNS
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
from cloud.storage.postgres._types import Conn
from cloud.storage.postgres.coupons_reconcile import reconcile
from cloud.storage.postgres.coupons_sql import (
    campaign_stats,
    campaigns,
    conflicts_page,
    hold_from_row,
    key_from_row,
    stores_array,
    stores_tuple,
)
from cloud.storage.postgres.storage import PostgresStorage

_COUPON_COLUMNS = (
    "coupon_id, campaign_id, key_id, value_minor, single_use, stores, valid_from, valid_to,"
    " token, issued_at"
)


class PostgresCouponStorage:
    """Coupon tables of one `PostgresStorage`; every write is one transaction."""

    def __init__(self, storage: PostgresStorage) -> None:
        # The storage's own connection context: one pool, one place errors become StorageError.
        self._connection = storage.connection

    async def create_campaign(
        self, campaign: NewCampaign, key: KeyPair, now: datetime
    ) -> CampaignRecord:
        """Insert the campaign and its first key together."""
        async with self._connection() as conn, conn.transaction():
            campaign_id = await conn.fetchval(
                "INSERT INTO coupon_campaigns (name, currency, max_offline_value, valid_from,"
                " valid_to, stores, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " RETURNING campaign_id",
                campaign.name,
                campaign.currency,
                campaign.max_offline_value,
                campaign.valid_from,
                campaign.valid_to,
                stores_array(campaign.stores),
                now,
            )
            await _insert_key(conn, campaign_id, key, now)
            (record,) = await campaigns(conn, "WHERE campaign_id = $1", campaign_id)
        return record

    async def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""
        async with self._connection() as conn:
            return await campaigns(conn)

    async def get_campaign(self, campaign_id: int) -> CampaignRecord | None:
        """One campaign and its keys."""
        async with self._connection() as conn:
            found = await campaigns(conn, "WHERE campaign_id = $1", campaign_id)
        return found[0] if found else None

    async def rotate_key(
        self, campaign_id: int, key: KeyPair, now: datetime
    ) -> CouponKeyRecord | None:
        """Retire the active key, insert `key` as the new active one."""
        async with self._connection() as conn, conn.transaction():
            # The campaign's row lock orders concurrent rotations: the second waits, then
            # retires the key the first made, so exactly one key stays active. NO KEY: the
            # foreign key checks of coupons being issued meanwhile need not wait for it.
            found = await conn.fetchval(
                "SELECT 1 FROM coupon_campaigns WHERE campaign_id = $1 FOR NO KEY UPDATE",
                campaign_id,
            )
            if found is None:
                return None
            await conn.execute(
                "UPDATE coupon_keys SET retired_at = $2 WHERE campaign_id = $1"
                " AND retired_at IS NULL",
                campaign_id,
                now,
            )
            key_id = await _insert_key(conn, campaign_id, key, now)
            row = await conn.fetchrow(
                f"SELECT {KEY_COLUMNS} FROM coupon_keys k WHERE k.key_id = $1", key_id
            )
        assert row is not None  # inserted just now, in this transaction
        return key_from_row(row)

    async def signing_key(self, campaign_id: int) -> SigningKey | None:
        """The active private key of a campaign."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT key_id, private_key FROM coupon_keys WHERE campaign_id = $1"
                " AND retired_at IS NULL",
                campaign_id,
            )
        return None if row is None else SigningKey(row[0], campaign_id, row[1])

    async def issue_coupons(self, coupons: Sequence[NewCoupon], now: datetime) -> bool:
        """Insert all coupons or none; False when a random coupon id was already taken."""
        params = [
            (
                c.coupon_id,
                c.campaign_id,
                c.key_id,
                c.value_minor,
                c.single_use,
                stores_array(c.stores),
                c.valid_from,
                c.valid_to,
                c.token,
                now,
            )
            for c in coupons
        ]
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.executemany(
                        f"INSERT INTO coupons ({_COUPON_COLUMNS})"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        params,
                    )
            except asyncpg.UniqueViolationError:
                return False  # the transaction rolled back whole: the caller draws new ids
        return True

    async def get_coupon(self, coupon_id: int) -> CouponRecord | None:
        """One coupon and its holder."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COUPON_COLUMNS} FROM coupons WHERE coupon_id = $1", coupon_id
            )
            if row is None:
                return None
            hold = await conn.fetchrow(
                f"SELECT {HOLD_COLUMNS} FROM coupon_holds WHERE coupon_id = $1", coupon_id
            )
        coupon_id_, campaign_id, key_id, value, single, stores, start, end, token, at = row
        coupon = NewCoupon(
            coupon_id=coupon_id_,
            campaign_id=campaign_id,
            key_id=key_id,
            value_minor=value,
            single_use=single,
            stores=stores_tuple(stores),
            valid_from=start,
            valid_to=end,
            token=token,
        )
        return CouponRecord(coupon, at, hold_from_row(hold) if hold else None)

    async def config_campaigns(self, store_id: str, now: datetime) -> list[ConfigCampaign]:
        """Campaigns not yet ended; keys still able to verify a live coupon, oldest first."""
        async with self._connection() as conn:
            live = await campaigns(conn, "WHERE valid_to > $1", now)
        out = []
        for record in live:
            # A retired key whose coupons have all expired can verify nothing any more.
            keys = tuple(
                k
                for k in record.keys
                if k.active or (k.last_valid_to is not None and k.last_valid_to > now)
            )
            out.append(
                ConfigCampaign(
                    campaign_id=record.campaign_id,
                    name=record.name,
                    currency=record.currency,
                    max_offline_value=record.max_offline_value,
                    valid_from=record.valid_from,
                    valid_to=record.valid_to,
                    redeemable_here=record.stores is None or store_id in record.stores,
                    keys=keys,
                )
            )
        return out

    async def reserve(
        self,
        coupon_id: int,
        campaign_id: int,
        redemption_id: str,
        agent: AgentIdentity,
        now: datetime,
    ) -> ReserveOutcome:
        """INSERT … ON CONFLICT DO NOTHING on the hold's primary key, then read the holder."""
        async with self._connection() as conn:
            single_use = await conn.fetchval(
                "SELECT single_use FROM coupons WHERE coupon_id = $1 AND campaign_id = $2",
                coupon_id,
                campaign_id,
            )
            if single_use is None:
                return ReserveOutcome("unknown")
            if not single_use:
                return ReserveOutcome("not_required")
            # The primary key makes this the whole race: one INSERT wins, fleet-wide. A loser
            # waits for the winner's commit, then inserts nothing; its own statement commits.
            held = await conn.fetchrow(
                "INSERT INTO coupon_holds (coupon_id, campaign_id, store_id, agent_id,"
                " redemption_id, held_at, via) VALUES ($1, $2, $3, $4, $5, $6, 'reservation')"
                f" ON CONFLICT (coupon_id) DO NOTHING RETURNING {HOLD_COLUMNS}",
                coupon_id, campaign_id, agent.store_id, agent.agent_id, redemption_id, now,
            )  # fmt: skip
            if held is None:
                # A separate statement, so a fresh snapshot that sees the winner's row.
                held = await conn.fetchrow(
                    f"SELECT {HOLD_COLUMNS} FROM coupon_holds WHERE coupon_id = $1", coupon_id
                )
        assert held is not None  # holds are never deleted
        hold = hold_from_row(held)
        # The store's own ledger arbitrates between its devices (docs/COUPONS.md).
        mine = hold.store_id == agent.store_id
        return ReserveOutcome("reserved" if mine else "already_redeemed", hold)

    async def reconcile(
        self,
        agent: AgentIdentity,
        redemptions: Sequence[RedemptionRecord],
        rejections: Sequence[RejectionRecord],
        now: datetime,
    ) -> None:
        """Insert new redemptions and rejections; hold and conflict bookkeeping in one go."""
        async with self._connection() as conn, conn.transaction():
            await reconcile(conn, agent, redemptions, rejections, now)

    async def campaign_stats(self, campaign_id: int) -> CampaignStats | None:
        """Totals per store, read in one snapshot so they add up."""
        async with self._connection() as conn:
            return await campaign_stats(conn, campaign_id)

    async def list_conflicts(
        self, campaign_id: int | None, after: int | None, limit: int
    ) -> list[ConflictRecord]:
        """A page of conflicts with every redemption of each."""
        async with self._connection() as conn:
            return await conflicts_page(conn, campaign_id, after, limit)

    async def recent_conflicts(self, limit: int) -> list[ConflictRecord]:
        """The latest conflicts, read backwards on the primary key."""
        async with self._connection() as conn:
            return await conflicts_page(conn, None, None, limit, newest_first=True)


async def _insert_key(conn: Conn, campaign_id: int, key: KeyPair, now: datetime) -> int:
    key_id: int = await conn.fetchval(
        "INSERT INTO coupon_keys (campaign_id, public_key, private_key, created_at)"
        " VALUES ($1, $2, $3, $4) RETURNING key_id",
        campaign_id,
        key.public_key,
        key.private_key,
        now,
    )
    return key_id
