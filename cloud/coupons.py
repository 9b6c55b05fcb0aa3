"""Coupon operations behind the admin and agent APIs: keys, issuing, business config, QR codes.

Private keys are made here, stored by `CouponStorage`, and read back only to sign in `issue`;
no response, log line or config ever carries one.
"""

import hashlib
import io
import secrets
from datetime import UTC, datetime, timedelta

import orjson
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud.coupon_models import CampaignCreate, IssueRequest
from cloud.errors import BadRequest, NotFound, StorageError
from cloud.settings import EffectiveSettings
from cloud.storage.coupon_records import (
    CampaignRecord,
    ConfigCampaign,
    KeyPair,
    NewCampaign,
    NewCoupon,
)
from cloud.storage.coupons import CouponStorage
from protocol.coupon_events import (
    BusinessConfig,
    CampaignPolicy,
    CouponConfig,
    CouponKeyInfo,
)
from protocol.coupons import CouponClaims, encode_public_key, encode_token, store_tags
from protocol.settings import SettingsDocument

# Coupon ids are random but JSON-safe: a browser console reads integers exactly only up to
# 2**53 (ECMA-262 Number.MAX_SAFE_INTEGER). A clash with an issued id redraws the batch.
COUPON_ID_BITS = 53
ISSUE_ATTEMPTS = 5
# QR for phones and printed vouchers: error correction M survives a cracked screen (ISO/IEC
# 18004 §6.5.1: ~15 % of codewords), scale 8 px per module, 4-module quiet zone (§6.3.8).
QR_ERROR = "m"
QR_SCALE = 8
QR_BORDER = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def new_key_pair() -> KeyPair:
    """A fresh Ed25519 key pair as raw 32-byte halves."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(public, private.private_bytes_raw())


async def create_campaign(
    coupons: CouponStorage, body: CampaignCreate, now: datetime | None = None
) -> CampaignRecord:
    """Store a campaign with its own first key pair."""
    campaign = NewCampaign(
        name=body.name,
        currency=body.currency,
        max_offline_value=body.max_offline_value,
        valid_from=body.valid_from.astimezone(UTC),
        valid_to=body.valid_to.astimezone(UTC),
        stores=None if body.stores is None else tuple(body.stores),
    )
    return await coupons.create_campaign(campaign, new_key_pair(), now or datetime.now(UTC))


async def issue(
    coupons: CouponStorage, campaign_id: int, body: IssueRequest, now: datetime | None = None
) -> list[NewCoupon]:
    """Sign and store `body.count` coupons with the campaign's active key; all or none."""
    now = now or datetime.now(UTC)
    campaign = await coupons.get_campaign(campaign_id)
    if campaign is None:
        raise NotFound(f"unknown campaign {campaign_id}", key="unknown_campaign")
    # Compared as given: converting first would overflow on e.g. 9999-12-31T23:59-14:00.
    start = body.valid_from or campaign.valid_from
    end = body.valid_to or campaign.valid_to
    if not campaign.valid_from <= start < end <= campaign.valid_to:
        raise BadRequest("coupon validity must lie within the campaign's", key="bad_validity")
    # Token times are whole unix seconds (docs/COUPONS.md "Layout"). Rounded inward, the
    # coupon never starts before nor ends after what was asked (and so the campaign's).
    first, last = _ceil_seconds(start), _floor_seconds(end)
    if first >= last:
        raise BadRequest("coupon validity must span a whole second", key="bad_validity")
    if body.stores is not None and campaign.stores is not None:
        outside = sorted(set(body.stores) - set(campaign.stores))
        if outside:
            raise BadRequest(f"stores outside the campaign: {outside[:5]}", key="bad_stores")
    key = await coupons.signing_key(campaign_id)
    if key is None:  # every campaign is created with a key and rotation replaces it atomically
        raise StorageError(f"campaign {campaign_id} has no active key")
    signer = Ed25519PrivateKey.from_private_bytes(key.private_key)
    tags = store_tags(body.stores or ())
    for _ in range(ISSUE_ATTEMPTS):
        batch = []
        for coupon_id in _new_ids(body.count):
            claims = CouponClaims(
                key_id=key.key_id,
                campaign_id=campaign_id,
                coupon_id=coupon_id,
                value_minor=body.value,
                currency=campaign.currency,
                valid_from=first,
                valid_to=last,
                store_tags=tags,
                single_use=body.single_use,
            )
            batch.append(
                NewCoupon(
                    coupon_id=coupon_id,
                    campaign_id=campaign_id,
                    key_id=key.key_id,
                    value_minor=body.value,
                    single_use=body.single_use,
                    stores=None if body.stores is None else tuple(sorted(set(body.stores))),
                    valid_from=datetime.fromtimestamp(claims.valid_from, UTC),
                    valid_to=datetime.fromtimestamp(claims.valid_to, UTC),
                    token=encode_token(claims, signer),
                )
            )
        if await coupons.issue_coupons(batch, now):
            return batch
    raise StorageError(f"coupon ids clashed {ISSUE_ATTEMPTS} times in a row")


async def business_config(
    coupons: CouponStorage,
    store_id: str,
    now: datetime | None = None,
    settings: EffectiveSettings | None = None,
) -> BusinessConfig:
    """The business config of one store; `version` hashes its content, so equal means equal.

    `settings` (cloud.settings) fills the sections beside `coupons` and its coupon knobs;
    without it every section has its default.
    """
    campaigns = await coupons.config_campaigns(store_id, now or datetime.now(UTC))
    document = settings.settings if settings is not None else SettingsDocument()
    section = CouponConfig(
        campaigns=[_policy(c) for c in campaigns],
        reserve_timeout_ms=document.coupons.reserve_timeout_ms,
    )
    config = BusinessConfig(
        version="0" * 32,  # replaced below by the hash of everything else
        store_id=store_id,
        coupons=section,
        settings_version=settings.version if settings is not None else 0,
        receipt=document.receipt,
        scan=document.scan,
        devices=document.devices,
    )
    content = config.model_dump(mode="json", exclude={"version"})
    # Every replica computes the same version from the same rows: no state in memory.
    version = hashlib.blake2b(orjson.dumps(content, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return config.model_copy(update={"version": version.hexdigest()})


def qr_png(token: str) -> bytes:
    """A PNG of the token's QR code, for phones and printed coupons."""
    qr = segno.make_qr(token, error=QR_ERROR, boost_error=False)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return out.getvalue()


def _policy(campaign: ConfigCampaign) -> CampaignPolicy:
    newest_active = max((k.key_id for k in campaign.keys if k.active), default=None)
    return CampaignPolicy(
        campaign_id=campaign.campaign_id,
        name=campaign.name[:256],
        currency=campaign.currency,
        max_offline_value=campaign.max_offline_value,
        valid_from=campaign.valid_from,
        valid_to=campaign.valid_to,
        redeemable_here=campaign.redeemable_here,
        keys=[
            CouponKeyInfo(
                key_id=k.key_id,
                public_key=encode_public_key(k.public_key),
                active=k.key_id == newest_active,
            )
            for k in campaign.keys
        ],
    )


def _floor_seconds(when: datetime) -> int:
    # Integer arithmetic: a float timestamp can round a microsecond across a second.
    return (when - _EPOCH) // _SECOND


def _ceil_seconds(when: datetime) -> int:
    return -((_EPOCH - when) // _SECOND)


def _new_ids(count: int) -> list[int]:
    ids: set[int] = set()
    while len(ids) < count:
        ids.add(secrets.randbits(COUPON_ID_BITS) or 1)
    return list(ids)
