"""The SE1 coupon token: published test vectors, tamper tests over every bit, property tests."""

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.coupons import (
    MAX_COUPON_ID,
    MAX_TOKEN_CHARS,
    BadFormat,
    BadSignature,
    CouponClaims,
    CouponError,
    Expired,
    NotYetValid,
    Oversized,
    Truncated,
    TrustedKey,
    UnknownKey,
    UnsupportedVersion,
    WrongStore,
    encode_public_key,
    encode_token,
    format_value,
    parse_token,
    parse_value,
    store_tag,
    store_tags,
    verify_token,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "COUPONS.md"
# docs/COUPONS.md "Test vectors": the Ed25519 key whose 32-byte seed is 00 01 02 … 1f.
SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
T2026 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
T2027 = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
V1 = CouponClaims(1, 7, 123456789, 5000, "CNY", T2026, T2027)
V1_TOKEN = (
    "SE1.AQEAAAABAAAABwAAAAAHW80VAAATiENOWWlVuQBrNuyAAGFxNNXiDVFYQizNX8222zsKFv3egJ0MgS6lxkloSopI"
    "-co3TZ2EK5ni1Ll5BpAJqlmfQ-pvcBA3pcbqCBR4TQU"
)
V2 = CouponClaims(
    2, 7, 42, 1999, "USD",
    int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()),
    int(datetime(2026, 7, 1, tzinfo=UTC).timestamp()),
    store_tags(["store-001", "store-002"]), single_use=False,
)  # fmt: skip
V2_TOKEN = (
    "SE1.AQAAAAACAAAABwAAAAAAAAAqAAAHz1VTRGocy4BqRFiAAi211w5OXnkrty6Gujt7nyK2H55V_ZpOyZmR2aGJqmYU"
    "33SHYaBquMVoV3QS1vlsT22di_NG-Oe6O7bXVmBxuE_WJwuBK_ClF4gKLwY"
)
KEYS = {
    1: TrustedKey(1, 7, KEY.public_key()),
    2: TrustedKey(2, 7, KEY.public_key()),
}
MID_2026 = datetime(2026, 6, 15, tzinfo=UTC)


def raw(token: str) -> bytes:
    body = token.removeprefix("SE1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def text(data: bytes) -> str:
    return "SE1." + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_vectors_encode_to_the_published_tokens() -> None:
    assert encode_public_key(KEY.public_key().public_bytes_raw()) == PUBLIC
    assert encode_token(V1, KEY) == V1_TOKEN
    assert encode_token(V2, KEY) == V2_TOKEN
    assert parse_token(V1_TOKEN).claims == V1
    assert parse_token(V2_TOKEN).claims == V2
    assert store_tag("store-001").hex() == "2db5d70e4e5e"
    assert len(V1_TOKEN) == 135  # a version 8 QR (49×49 modules) at level M


def test_vectors_are_the_ones_in_the_docs() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for needle in (PUBLIC, V1_TOKEN, V2_TOKEN, SEED.hex(), "2db5d70e4e5e", "792bb72e86ba"):
        assert needle in doc, needle


def test_vectors_verify_where_and_when_they_should() -> None:
    one = verify_token(V1_TOKEN, KEYS, MID_2026, "any-store")
    assert (one.code, one.value_text, one.fingerprint) == ("7-123456789", "50.00 CNY",
                                                          one.fingerprint)  # fmt: skip
    two = verify_token(V2_TOKEN, KEYS, MID_2026, "store-002")
    assert not two.claims.single_use
    with pytest.raises(WrongStore):
        verify_token(V2_TOKEN, KEYS, MID_2026, "store-003")  # replayed at another store


def test_validity_window_is_half_open_with_leeway() -> None:
    start = datetime.fromtimestamp(T2026, UTC)
    end = datetime.fromtimestamp(T2027, UTC)
    verify_token(V1_TOKEN, KEYS, start, "s")
    with pytest.raises(NotYetValid):
        verify_token(V1_TOKEN, KEYS, start - timedelta(seconds=1), "s")
    verify_token(V1_TOKEN, KEYS, start - timedelta(seconds=60), "s", leeway_s=60)
    with pytest.raises(Expired):
        verify_token(V1_TOKEN, KEYS, end, "s")
    verify_token(V1_TOKEN, KEYS, end, "s", leeway_s=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_token(V1_TOKEN, KEYS, datetime(2026, 6, 1), "s")


def test_every_single_bit_flip_is_refused() -> None:
    data = raw(V1_TOKEN)
    reasons: dict[str, int] = {}
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(CouponError) as info:
                verify_token(text(bytes(flipped)), KEYS, MID_2026, "s")
            reasons[info.value.reason] = reasons.get(info.value.reason, 0) + 1
    assert set(reasons) <= {"bad_format", "unknown_key", "bad_signature"}
    assert reasons["bad_signature"] > 600  # most bits: only the signature can tell


def test_every_character_substitution_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(4, len(V1_TOKEN)):
        for c in alphabet[::7]:
            if c == V1_TOKEN[i]:
                continue
            forged = V1_TOKEN[:i] + c + V1_TOKEN[i + 1 :]
            with pytest.raises(CouponError):
                verify_token(forged, KEYS, MID_2026, "s")


def test_every_truncation_is_bad_format() -> None:
    for end in range(len(V1_TOKEN)):
        with pytest.raises(BadFormat):
            verify_token(V1_TOKEN[:end], KEYS, MID_2026, "s")
    with pytest.raises(Truncated):
        parse_token(V1_TOKEN[:60])


def test_resigned_with_another_key_is_bad_signature() -> None:
    forged = encode_token(
        dataclasses.replace(V1, value_minor=999_999), Ed25519PrivateKey.generate()
    )
    with pytest.raises(BadSignature):
        verify_token(forged, KEYS, MID_2026, "s")


def test_key_of_another_campaign_or_unknown_key_is_unknown_key() -> None:
    other_campaign = encode_token(dataclasses.replace(V1, campaign_id=8), KEY)
    with pytest.raises(UnknownKey, match="does not sign campaign 8"):
        verify_token(other_campaign, KEYS, MID_2026, "s")
    with pytest.raises(UnknownKey, match="no trusted key 9"):
        verify_token(encode_token(dataclasses.replace(V1, key_id=9), KEY), KEYS, MID_2026, "s")


def test_campaign_not_running_here_is_wrong_store() -> None:
    keys = {1: TrustedKey(1, 7, KEY.public_key(), redeemable_here=False)}
    with pytest.raises(WrongStore, match="does not run"):
        verify_token(V1_TOKEN, keys, MID_2026, "s")


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("", BadFormat),
        ("https://example.com/?coupon=1", BadFormat),
        ("4006381333931", BadFormat),
        ("SE1.", Truncated),
        ("SE1.A", Truncated),
        ("SE1.AA==", BadFormat),  # padding is not base64url as we write it
        ("SE1.AQ", Truncated),
        ("SE1." + "A" * (MAX_TOKEN_CHARS - 3), Oversized),
        (text(b"\x02" + raw(V1_TOKEN)[1:]), UnsupportedVersion),
        (text(raw(V1_TOKEN) + b"\x00"), BadFormat),  # bytes after the signature
        (V1_TOKEN[:-1] + "V", BadFormat),  # unused low bits set: non-canonical
    ],
)
def test_malformed_tokens(token: str, error: type[CouponError]) -> None:
    with pytest.raises(error):
        parse_token(token)


def test_header_fields_out_of_range_are_bad_format() -> None:
    data = bytearray(raw(V1_TOKEN))
    data[1] = 0x03  # a reserved flag bit
    with pytest.raises(BadFormat, match="reserved flag"):
        parse_token(text(bytes(data)))
    data = bytearray(raw(V1_TOKEN))
    data[10] = 0x80  # coupon id ≥ 2**63
    with pytest.raises(BadFormat, match="coupon_id"):
        parse_token(text(bytes(data)))
    data = bytearray(raw(V1_TOKEN))
    data[33] = 9  # nine stores: over MAX_STORES
    with pytest.raises(BadFormat, match="at most 8"):
        parse_token(text(bytes(data)))


claims_strategy = st.builds(
    CouponClaims,
    key_id=st.integers(0, 2**32 - 1),
    campaign_id=st.integers(0, 2**32 - 1),
    coupon_id=st.integers(0, MAX_COUPON_ID),
    value_minor=st.integers(0, 2**32 - 1),
    currency=st.sampled_from(["CNY", "EUR", "JPY", "KWD"]),
    valid_from=st.integers(0, 2**31),
    valid_to=st.integers(2**31 + 1, 2**32 - 1),
    store_tags=st.lists(st.text(min_size=1, max_size=20), max_size=8).map(store_tags),
    single_use=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(claims_strategy)
def test_any_claims_round_trip(claims: CouponClaims) -> None:
    token = encode_token(claims, KEY)
    assert len(token) <= MAX_TOKEN_CHARS
    assert parse_token(token).claims == claims
    keys = {claims.key_id: TrustedKey(claims.key_id, claims.campaign_id, KEY.public_key())}
    when = datetime.fromtimestamp(claims.valid_from, UTC)
    if claims.allows_store("x"):
        assert verify_token(token, keys, when, "x").claims == claims
    else:
        with pytest.raises(WrongStore):
            verify_token(token, keys, when, "x")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.text(alphabet="ABCdef0189-_=+/.", max_size=250).map(
    lambda s: "SE1." + s)))  # fmt: skip
def test_arbitrary_text_only_ever_raises_coupon_errors(value: str) -> None:
    try:
        verify_token(value, KEYS, MID_2026, "s")
    except CouponError:
        return
    raise AssertionError(f"{value!r} verified")


def test_value_text_uses_the_currency_exponent() -> None:
    assert format_value(5000, "CNY") == "50.00 CNY"
    assert format_value(5000, "JPY") == "5000 JPY"
    assert format_value(1234, "KWD") == "1.234 KWD"
    assert format_value(5, "EUR") == "0.05 EUR"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("50", "CNY", 5000), ("50.5", "CNY", 5050), (" 0.05 ", "EUR", 5), ("50.", "CNY", 5000),
     ("5000", "JPY", 5000), ("1.234", "KWD", 1234), ("1.2", "KWD", 1200), ("0", "EUR", 0)],
)  # fmt: skip
def test_a_typed_amount_becomes_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_value(text, currency) == minor
    assert parse_value(format_value(minor, currency).split()[0], currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "why"),
    [("5.001", "EUR", "EUR has 2 decimals, not 3"), ("5.5", "JPY", "JPY has 0 decimals"),
     ("-5", "EUR", "not an amount"), ("5,00", "EUR", "not an amount"), ("", "EUR", "not an amount"),
     ("1e3", "EUR", "not an amount"), ("9" * 13, "EUR", "not an amount")],
)  # fmt: skip
def test_a_bad_amount_says_why(text: str, currency: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_value(text, currency)
