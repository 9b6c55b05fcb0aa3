-- Coupons (docs/COUPONS.md): campaigns and their keys, issued coupons, the fleet-wide
-- single-use holds, and what reconciliation keeps of synced coupon events. The same tables
-- as SQLite's (cloud/storage/_coupon_schema.py); store ids are COLLATE "C" as in 0001.
-- Store lists are sorted text arrays (NULL: every store), read whole, never queried inside.

-- campaign_id and key_id are the token's u32 fields (docs/COUPONS.md "Layout"), so the
-- identities stop at 2^32 - 1 rather than mint an id no token can carry.
CREATE TABLE coupon_campaigns (
    campaign_id        bigint GENERATED ALWAYS AS IDENTITY (MAXVALUE 4294967295) PRIMARY KEY,
    name               text NOT NULL,
    currency           text NOT NULL,
    max_offline_value  bigint NOT NULL,
    valid_from         timestamptz NOT NULL,
    valid_to           timestamptz NOT NULL,
    stores             text[] COLLATE "C",
    created_at         timestamptz NOT NULL
);

-- Key ids are unique fleet-wide: an agent's keyring maps a token's key id to one key.
-- The private key never leaves this table except to sign (cloud/coupons.py).
CREATE TABLE coupon_keys (
    key_id       bigint GENERATED ALWAYS AS IDENTITY (MAXVALUE 4294967295) PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES coupon_campaigns (campaign_id),
    public_key   bytea NOT NULL,
    private_key  bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    retired_at   timestamptz
);
CREATE INDEX coupon_keys_campaign ON coupon_keys (campaign_id, key_id);
-- At most one active key per campaign: rotation retires the old one first.
CREATE UNIQUE INDEX coupon_keys_active ON coupon_keys (campaign_id) WHERE retired_at IS NULL;

-- coupon_id is random (63 bits), so ids reveal nothing about issuance volume.
CREATE TABLE coupons (
    coupon_id    bigint PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES coupon_campaigns (campaign_id),
    key_id       bigint NOT NULL REFERENCES coupon_keys (key_id),
    value_minor  bigint NOT NULL,
    single_use   boolean NOT NULL,
    stores       text[] COLLATE "C",
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz NOT NULL,
    token        text NOT NULL,
    issued_at    timestamptz NOT NULL
);
CREATE INDEX coupons_campaign ON coupons (campaign_id);
-- Also serves each key's latest coupon expiry (how long a retired key stays in keyrings).
CREATE INDEX coupons_key ON coupons (key_id, valid_to);

-- The fleet-wide single use: one row per held coupon, taken by an online reservation or,
-- when the store was offline, by the first redemption synced. The PRIMARY KEY is the race
-- (INSERT … ON CONFLICT DO NOTHING: one insert wins on any replica), and the row is the
-- lock reconciliation takes to count a coupon's redemptions one transaction at a time.
CREATE TABLE coupon_holds (
    coupon_id      bigint PRIMARY KEY,
    campaign_id    bigint NOT NULL,
    store_id       text COLLATE "C" NOT NULL,
    agent_id       text COLLATE "C" NOT NULL,
    redemption_id  text COLLATE "C" NOT NULL,
    held_at        timestamptz NOT NULL,
    via            text NOT NULL CHECK (via IN ('reservation', 'redemption'))
);
CREATE INDEX coupon_holds_campaign ON coupon_holds (campaign_id, via);

-- One row per coupon.redeemed event, keyed by the agent's redemption_id (idempotent).
-- No foreign key to coupons: a redemption of a coupon this cloud never issued is kept too.
-- redemption_id is COLLATE "C" because conflicts list their redemptions in its order.
CREATE TABLE coupon_redemptions (
    redemption_id  text COLLATE "C" PRIMARY KEY,
    event_id       text NOT NULL,
    coupon_id      bigint NOT NULL,
    campaign_id    bigint NOT NULL,
    store_id       text COLLATE "C" NOT NULL,
    agent_id       text COLLATE "C" NOT NULL,
    value_minor    bigint NOT NULL,
    single_use     boolean NOT NULL,
    mode           text NOT NULL,
    staff_id       text,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL
);
CREATE INDEX coupon_redemptions_coupon ON coupon_redemptions (coupon_id);
CREATE INDEX coupon_redemptions_campaign ON coupon_redemptions (campaign_id, store_id);

CREATE TABLE coupon_rejections (
    event_id     text PRIMARY KEY,
    campaign_id  bigint,
    coupon_id    bigint,
    store_id     text COLLATE "C" NOT NULL,
    reason       text NOT NULL,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX coupon_rejections_campaign ON coupon_rejections (campaign_id, store_id);

-- A single-use coupon redeemed more than once: one row per coupon, however many arrive.
-- `id` is the listing cursor; writers lock the table before inserting (until commit), so
-- ids are handed out in commit order and a page never skips a row committed later.
CREATE TABLE coupon_conflicts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    coupon_id    bigint NOT NULL UNIQUE,
    campaign_id  bigint NOT NULL,
    detected_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX coupon_conflicts_campaign ON coupon_conflicts (campaign_id, id);
