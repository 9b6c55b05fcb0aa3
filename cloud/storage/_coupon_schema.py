"""SQLite schema of the coupon tables (migration 2 of `_schema.MIGRATIONS`); plain SQL.

Times are INTEGER unix microseconds like every other table. Store lists are JSON arrays of
store ids (NULL: every store), read whole: they are small and never queried inside.
"""

COUPONS_V1 = """
    -- campaign_id and key_id are the token's u32 fields (docs/COUPONS.md "Layout").
    CREATE TABLE coupon_campaigns (
        campaign_id        INTEGER PRIMARY KEY AUTOINCREMENT,
        name               TEXT NOT NULL,
        currency           TEXT NOT NULL,
        max_offline_value  INTEGER NOT NULL,
        valid_from         INTEGER NOT NULL,
        valid_to           INTEGER NOT NULL,
        stores             TEXT,
        created_at         INTEGER NOT NULL
    );

    -- Key ids are unique fleet-wide: an agent's keyring maps a token's key id to one key.
    -- The private key never leaves this table except to sign (cloud/coupons.py).
    CREATE TABLE coupon_keys (
        key_id       INTEGER PRIMARY KEY AUTOINCREMENT,
        campaign_id  INTEGER NOT NULL REFERENCES coupon_campaigns(campaign_id),
        public_key   BLOB NOT NULL,
        private_key  BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        retired_at   INTEGER
    );
    CREATE INDEX coupon_keys_campaign ON coupon_keys(campaign_id, key_id);
    -- At most one active key per campaign: rotation retires the old one first.
    CREATE UNIQUE INDEX coupon_keys_active ON coupon_keys(campaign_id) WHERE retired_at IS NULL;

    -- coupon_id is random (63 bits), so ids reveal nothing about issuance volume.
    CREATE TABLE coupons (
        coupon_id    INTEGER PRIMARY KEY,
        campaign_id  INTEGER NOT NULL REFERENCES coupon_campaigns(campaign_id),
        key_id       INTEGER NOT NULL REFERENCES coupon_keys(key_id),
        value_minor  INTEGER NOT NULL,
        single_use   INTEGER NOT NULL,
        stores       TEXT,
        valid_from   INTEGER NOT NULL,
        valid_to     INTEGER NOT NULL,
        token        TEXT NOT NULL,
        issued_at    INTEGER NOT NULL
    );
    CREATE INDEX coupons_campaign ON coupons(campaign_id);
    CREATE INDEX coupons_key ON coupons(key_id, valid_to);

    -- The fleet-wide single use: one row per held coupon, taken by an online reservation or,
    -- when the store was offline, by the first redemption synced. The PRIMARY KEY is the lock.
    CREATE TABLE coupon_holds (
        coupon_id      INTEGER PRIMARY KEY,
        campaign_id    INTEGER NOT NULL,
        store_id       TEXT NOT NULL,
        agent_id       TEXT NOT NULL,
        redemption_id  TEXT NOT NULL,
        held_at        INTEGER NOT NULL,
        via            TEXT NOT NULL CHECK (via IN ('reservation', 'redemption'))
    );
    CREATE INDEX coupon_holds_campaign ON coupon_holds(campaign_id, via);

    -- One row per coupon.redeemed event, keyed by the agent's redemption_id (idempotent).
    CREATE TABLE coupon_redemptions (
        redemption_id  TEXT PRIMARY KEY,
        event_id       TEXT NOT NULL,
        coupon_id      INTEGER NOT NULL,
        campaign_id    INTEGER NOT NULL,
        store_id       TEXT NOT NULL,
        agent_id       TEXT NOT NULL,
        value_minor    INTEGER NOT NULL,
        single_use     INTEGER NOT NULL,
        mode           TEXT NOT NULL,
        staff_id       TEXT,
        occurred_at    INTEGER NOT NULL,
        received_at    INTEGER NOT NULL
    );
    CREATE INDEX coupon_redemptions_coupon ON coupon_redemptions(coupon_id);
    CREATE INDEX coupon_redemptions_campaign ON coupon_redemptions(campaign_id, store_id);

    CREATE TABLE coupon_rejections (
        event_id     TEXT PRIMARY KEY,
        campaign_id  INTEGER,
        coupon_id    INTEGER,
        store_id     TEXT NOT NULL,
        reason       TEXT NOT NULL,
        occurred_at  INTEGER NOT NULL
    );
    CREATE INDEX coupon_rejections_campaign ON coupon_rejections(campaign_id, store_id);

    -- A single-use coupon redeemed more than once: one row per coupon, however many arrive.
    -- `id` is the listing cursor.
    CREATE TABLE coupon_conflicts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        coupon_id    INTEGER NOT NULL UNIQUE,
        campaign_id  INTEGER NOT NULL,
        detected_at  INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX coupon_conflicts_campaign ON coupon_conflicts(campaign_id, id);
"""
