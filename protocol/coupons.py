"""The coupon token: versioned binary claims signed with Ed25519, sent as `SE1.` + base64url.

Pure and sans-IO: the caller passes the keys, the clock (`now`) and its own store id. Layout,
signing, reasons and key rotation are documented byte by byte in docs/COUPONS.md.

CouponError                       the token must not be redeemed; `reason` is a stable code
├── BadFormat (ValueError)        not a well-formed token; `problem` says how
│   ├── Truncated                 shorter than its own layout says
│   ├── Oversized                 longer than any valid token
│   └── UnsupportedVersion        a layout version this build does not know
├── UnknownKey                    no trusted key by that id, or the key signs another campaign
├── BadSignature                  the signature does not verify: tampered, forged or re-signed
├── Expired                       now ≥ valid_to
├── NotYetValid                   now < valid_from
└── WrongStore                    this store is outside the coupon's or the campaign's scope
"""

import base64
import binascii
import hashlib
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.coupon_events import CouponConfig

TOKEN_PREFIX: Final = "SE1."  # agent scan routing's default coupon prefix (agent/config.py)
TOKEN_VERSION: Final = 1
# Ed25519 signs these bytes followed by the payload, so a coupon key's signature can never be
# passed off as one over some other storeedge message (domain separation).
SIGNING_CONTEXT: Final = b"storeedge/coupon\x00"
STORE_TAG_CONTEXT: Final = b"storeedge/store\x00"
# version, flags, key_id, campaign_id, coupon_id, value_minor, currency, valid_from, valid_to,
# store count: 34 bytes, big-endian (docs/COUPONS.md "Layout").
HEADER: Final = struct.Struct(">BBIIQI3sIIB")
FLAG_SINGLE_USE: Final = 0x01
STORE_TAG_BYTES: Final = 6  # 48 bits: a 100,000-store fleet collides with odds ~1e-9 per pair set
MAX_STORES: Final = 8
SIGNATURE_BYTES: Final = 64  # RFC 8032 §5.1.6
MAX_TOKEN_BYTES: Final = HEADER.size + MAX_STORES * STORE_TAG_BYTES + SIGNATURE_BYTES
MAX_TOKEN_CHARS: Final = len(TOKEN_PREFIX) + math.ceil(MAX_TOKEN_BYTES * 4 / 3)  # 199
_U32: Final = 2**32 - 1
# The layout has 64 bits for the coupon id, but the cloud stores ids in a signed 64-bit column
# (SQLite INTEGER, PostgreSQL bigint) and wire models cap them there: a token claiming more is
# malformed, so no forged id can ever reach an event payload it does not fit.
MAX_COUPON_ID: Final = 2**63 - 1
_NOT_B64URL = re.compile(r"[^A-Za-z0-9_-]")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# An amount as typed by a person: digits, then optionally a point and decimals (no sign, no
# exponent, no grouping); at most 12 digits before the point, far past any u32 value.
_AMOUNT = re.compile(r"([0-9]{1,12})(?:\.([0-9]*))?")
# ISO 4217 minor-unit exponents that are not 2 (the list's "Minor unit" column).
_MINOR_EXPONENT: Final[Mapping[str, int]] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


class CouponError(Exception):
    """A token that must not be redeemed; `claims` are as read (unauthenticated before the
    signature check, so trust them only on Expired, NotYetValid and WrongStore)."""

    reason: ClassVar[str] = "bad_format"

    def __init__(self, detail: str, claims: "CouponClaims | None" = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.claims = claims


class BadFormat(CouponError, ValueError):
    """The text is not a well-formed token."""

    reason = "bad_format"
    problem: ClassVar[str] = "malformed"


class Truncated(BadFormat):
    """Shorter than the layout requires."""

    problem = "truncated"


class Oversized(BadFormat):
    """Longer than the largest valid token."""

    problem = "oversized"


class UnsupportedVersion(BadFormat):
    """A layout version byte this build does not understand."""

    problem = "unsupported_version"


class UnknownKey(CouponError):
    """No trusted key under the token's key id, or that key belongs to another campaign."""

    reason = "unknown_key"


class BadSignature(CouponError):
    """The Ed25519 signature does not verify over the token's bytes."""

    reason = "bad_signature"


class Expired(CouponError):
    """The coupon's validity ended."""

    reason = "expired"


class NotYetValid(CouponError):
    """The coupon's validity has not started."""

    reason = "not_yet_valid"


class WrongStore(CouponError):
    """The store verifying is outside the coupon's or its campaign's store scope."""

    reason = "wrong_store"


def store_tag(store_id: str) -> bytes:
    """The 6-byte tag standing for `store_id` in a token's store scope."""
    return hashlib.sha256(STORE_TAG_CONTEXT + store_id.encode()).digest()[:STORE_TAG_BYTES]


def store_tags(store_ids: Iterable[str]) -> tuple[bytes, ...]:
    """Tags for a store scope, deduplicated and sorted (one encoding per scope)."""
    return tuple(sorted({store_tag(store_id) for store_id in store_ids}))


@dataclass(frozen=True, slots=True)
class CouponClaims:
    """What a token asserts; times are unix seconds, valid while valid_from ≤ t < valid_to."""

    key_id: int
    campaign_id: int
    coupon_id: int
    value_minor: int
    currency: str
    valid_from: int
    valid_to: int
    store_tags: tuple[bytes, ...] = ()  # empty: every store
    single_use: bool = True

    def __post_init__(self) -> None:
        for name in ("key_id", "campaign_id", "value_minor", "valid_from", "valid_to"):
            if not 0 <= getattr(self, name) <= _U32:
                raise ValueError(f"{name} must be 0..{_U32}")
        if not 0 <= self.coupon_id <= MAX_COUPON_ID:
            raise ValueError(f"coupon_id must be 0..{MAX_COUPON_ID}")
        if not _CURRENCY.match(self.currency):
            raise ValueError(f"currency {self.currency!r} is not an ISO 4217 code")
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if len(self.store_tags) > MAX_STORES:
            raise ValueError(f"at most {MAX_STORES} stores, got {len(self.store_tags)}")
        if any(len(tag) != STORE_TAG_BYTES for tag in self.store_tags):
            raise ValueError(f"store tags are {STORE_TAG_BYTES} bytes")
        if len(set(self.store_tags)) != len(self.store_tags):
            raise ValueError("store tags repeat")

    def allows_store(self, store_id: str) -> bool:
        """True when the token's own scope includes `store_id` (an empty scope is every store)."""
        return not self.store_tags or store_tag(store_id) in self.store_tags


class ParsedToken(NamedTuple):
    """A token split into its claims, its signature and the exact bytes that signature covers."""

    claims: CouponClaims
    signature: bytes
    signed_bytes: bytes


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the store trusts for one campaign, from the business config."""

    key_id: int
    campaign_id: int
    public_key: Ed25519PublicKey
    redeemable_here: bool = True


@dataclass(frozen=True, slots=True)
class VerifiedCoupon:
    """A token that passed every check in `verify_token`, with the text it came from."""

    claims: CouponClaims
    token: str

    @property
    def fingerprint(self) -> str:
        """`token_fingerprint` of the token."""
        return token_fingerprint(self.token)

    @property
    def code(self) -> str:
        """A short human reference for receipts and vouchers, `<campaign>-<coupon>`."""
        return f"{self.claims.campaign_id}-{self.claims.coupon_id}"

    @property
    def value_text(self) -> str:
        """The value as printed on a voucher, e.g. `50.00 CNY`."""
        return format_value(self.claims.value_minor, self.claims.currency)

    @property
    def valid_to_at(self) -> datetime:
        """End of validity as an aware UTC datetime."""
        return datetime.fromtimestamp(self.claims.valid_to, UTC)


def encode_token(claims: CouponClaims, private_key: Ed25519PrivateKey) -> str:
    """The token text of `claims` signed by `private_key` (deterministic: RFC 8032 §5.1.6)."""
    payload = HEADER.pack(
        TOKEN_VERSION,
        FLAG_SINGLE_USE if claims.single_use else 0,
        claims.key_id,
        claims.campaign_id,
        claims.coupon_id,
        claims.value_minor,
        claims.currency.encode("ascii"),
        claims.valid_from,
        claims.valid_to,
        len(claims.store_tags),
    ) + b"".join(claims.store_tags)
    signature = private_key.sign(SIGNING_CONTEXT + payload)
    return TOKEN_PREFIX + _b64(payload + signature)


def parse_token(text: str) -> ParsedToken:
    """Split a token without checking its signature; BadFormat (or a subclass) says why not."""
    if not text.startswith(TOKEN_PREFIX):
        raise BadFormat(f"not a coupon token: no {TOKEN_PREFIX!r} prefix")
    if len(text) > MAX_TOKEN_CHARS:
        raise Oversized(f"{len(text)} characters, more than {MAX_TOKEN_CHARS}")
    raw = _unb64(text[len(TOKEN_PREFIX) :])
    if not raw:
        raise Truncated("no payload after the prefix")
    if raw[0] != TOKEN_VERSION:
        raise UnsupportedVersion(f"layout version {raw[0]}, expected {TOKEN_VERSION}")
    if len(raw) < HEADER.size + SIGNATURE_BYTES:
        raise Truncated(f"{len(raw)} bytes, the smallest token is {HEADER.size + SIGNATURE_BYTES}")
    _, flags, key_id, campaign_id, coupon_id, value, currency, start, end, count = (
        HEADER.unpack_from(raw)
    )
    if count > MAX_STORES:
        raise BadFormat(f"store scope of {count} stores, at most {MAX_STORES}")
    size = HEADER.size + count * STORE_TAG_BYTES
    if len(raw) < size + SIGNATURE_BYTES:
        raise Truncated(f"{len(raw)} bytes, its layout needs {size + SIGNATURE_BYTES}")
    if len(raw) > size + SIGNATURE_BYTES:
        raise BadFormat(f"{len(raw) - size - SIGNATURE_BYTES} bytes after the signature")
    if flags & ~FLAG_SINGLE_USE:
        raise BadFormat(f"reserved flag bits set (flags 0x{flags:02x})")
    tags = tuple(raw[i : i + STORE_TAG_BYTES] for i in range(HEADER.size, size, STORE_TAG_BYTES))
    try:
        claims = CouponClaims(
            key_id=key_id,
            campaign_id=campaign_id,
            coupon_id=coupon_id,
            value_minor=value,
            currency=currency.decode("ascii"),
            valid_from=start,
            valid_to=end,
            store_tags=tags,
            single_use=bool(flags & FLAG_SINGLE_USE),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFormat(f"invalid claims: {exc}") from None
    return ParsedToken(claims, raw[size:], SIGNING_CONTEXT + raw[:size])


def verify_token(
    text: str,
    public_keys: Mapping[int, TrustedKey],
    now: datetime,
    store_id: str,
    *,
    leeway_s: int = 0,
) -> VerifiedCoupon:
    """The coupon if `text` is genuine, current and valid at `store_id`, else a CouponError.

    Checks run format, key, signature, time, store, so nothing about a forged token's claims
    (its expiry, its stores) is ever reported. `leeway_s` widens the window for clock skew.
    """
    claims, signature, signed = parse_token(text)
    key = public_keys.get(claims.key_id)
    if key is None:
        raise UnknownKey(f"no trusted key {claims.key_id}", claims)
    if key.campaign_id != claims.campaign_id:
        raise UnknownKey(f"key {key.key_id} does not sign campaign {claims.campaign_id}", claims)
    try:
        key.public_key.verify(signature, signed)
    except InvalidSignature:
        raise BadSignature(f"signature does not verify under key {key.key_id}", claims) from None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    t = math.floor(now.timestamp())
    if t + leeway_s < claims.valid_from:
        raise NotYetValid(f"valid from {_iso(claims.valid_from)}", claims)
    if t - leeway_s >= claims.valid_to:
        raise Expired(f"expired at {_iso(claims.valid_to)}", claims)
    if not claims.allows_store(store_id):
        raise WrongStore(f"not valid at store {store_id!r}", claims)
    if not key.redeemable_here:
        raise WrongStore(f"campaign {claims.campaign_id} does not run at {store_id!r}", claims)
    return VerifiedCoupon(claims, text)


def keyring(config: CouponConfig) -> dict[int, TrustedKey]:
    """Every public key of the business config's coupon section, by key id."""
    return {
        key.key_id: TrustedKey(
            key.key_id,
            campaign.campaign_id,
            decode_public_key(key.public_key),
            campaign.redeemable_here,
        )
        for campaign in config.campaigns
        for key in campaign.keys
    }


def encode_public_key(raw: bytes) -> str:
    """A raw 32-byte Ed25519 public key as config text (base64url, no padding)."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return _b64(raw)


def decode_public_key(text: str) -> Ed25519PublicKey:
    """The key of `encode_public_key` text; ValueError if it is not one."""
    return Ed25519PublicKey.from_public_bytes(_unb64(text))


def is_coupon_token(text: str) -> bool:
    """True when `text` claims to be a coupon token (it may still fail to parse)."""
    return text.startswith(TOKEN_PREFIX)


def token_fingerprint(text: str) -> str:
    """16 hex digits identifying a token in logs and events without repeating it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def format_value(value_minor: int, currency: str) -> str:
    """Minor units as text with the currency's ISO 4217 exponent: `5000, "CNY"` → `50.00 CNY`."""
    exponent = _MINOR_EXPONENT.get(currency, 2)
    if exponent == 0:
        return f"{value_minor} {currency}"
    major, minor = divmod(value_minor, 10**exponent)
    return f"{major}.{minor:0{exponent}d} {currency}"


def parse_value(text: str, currency: str) -> int:
    """The inverse of `format_value` for a typed amount: `"50"`, `"50.5"` CNY → 5000, 5050.

    ValueError (saying why) for anything but digits with at most the currency's decimals.
    """
    exponent = _MINOR_EXPONENT.get(currency, 2)
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an amount: {text[:32]!r}")
    major: str = match.group(1)
    decimals: str = match.group(2) or ""
    if len(decimals) > exponent:
        raise ValueError(f"{currency} has {exponent} decimals, not {len(decimals)}")
    scale: int = 10**exponent
    return int(major) * scale + int(decimals.ljust(exponent, "0") or "0")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    bad = _NOT_B64URL.search(text)
    if bad is not None:
        raise BadFormat(f"character {bad.group()!r} at {bad.start()} is not base64url")
    if len(text) % 4 == 1:
        raise Truncated(f"{len(text)} base64url characters cannot end a byte")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # unreachable after the checks above; kept as a guard
        raise BadFormat(f"not base64url: {exc}") from None
    # One text per byte string: unused low bits of the last character must be zero, or a
    # changed character would decode to the same (validly signed) bytes.
    if _b64(raw) != text:
        raise BadFormat("non-canonical base64url (unused bits set)")
    return raw


def _iso(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat().replace("+00:00", "Z")
