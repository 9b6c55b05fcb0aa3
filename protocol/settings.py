"""Remote business settings: the versioned sections of GET /v1/config beside `coupons`.

Head office writes a `SettingsDocument` for the whole fleet and, optionally, one per store;
the cloud merges them (RFC 7396 JSON Merge Patch, docs/CONFIG.md "Remote config") and serves
the result inside `BusinessConfig`. Only business lives here: what is plugged where stays in
agent.toml, so no key is ever owned by both (DESIGN.md "Agent config").
"""

import re
from typing import Annotated, Final

from pydantic import AwareDatetime, Field, field_validator

from protocol.base import Frozen, Id

# Bounds so one document cannot bloat every store's config or a printed voucher: a voucher's
# `terms` holds at most 1024 characters (agent/devices/printer/templates.py CouponData), of
# which the redemption lines take about 150.
MAX_PREFIXES: Final = 16
MAX_BADGE_PATTERNS: Final = 8
MAX_PATTERN_LEN: Final = 256
MAX_FOOTER_LINES: Final = 8
MAX_FOOTER_LINE_LEN: Final = 64
MAX_DEVICE_ENTRIES: Final = 256
MAX_REASON_LEN: Final = 1024

Prefix = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
FooterLine = Annotated[str, Field(max_length=MAX_FOOTER_LINE_LEN)]
Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Version = Annotated[int, Field(ge=0, le=2**63 - 1)]


class ScanRules(Frozen):
    """Scan formats recognised in addition to agent.toml's `[scan]` (never instead of it)."""

    coupon_prefixes: list[Prefix] = Field(default=[], max_length=MAX_PREFIXES)
    # Matched against the whole scan text, like `[scan] staff_badge_pattern`.
    staff_badge_patterns: list[Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LEN)]] = (
        Field(default=[], max_length=MAX_BADGE_PATTERNS)
    )

    @field_validator("staff_badge_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for index, pattern in enumerate(patterns):
            try:
                # As the agent uses it: one alternative among several (agent/remote_config).
                re.compile(f"(?:{pattern})")
            except re.error as exc:
                raise ValueError(f"[{index}] {pattern!r} is not a valid regex: {exc}") from None
        return patterns


class ReceiptSettings(Frozen):
    """What the store's vouchers say about the store; None keeps the agent's default."""

    store_name: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    voucher_footer: list[FooterLine] = Field(default=[], max_length=MAX_FOOTER_LINES)


class DeviceSettings(Frozen):
    """Business settings of one device, keyed by its agent.toml id; `scan` needs a scanner."""

    scan: ScanRules = ScanRules()


class CouponKnobs(Frozen):
    """Coupon policy knobs an admin sets; served inside the `coupons` section."""

    reserve_timeout_ms: int = Field(default=300, ge=1, le=10_000)


class SettingsDocument(Frozen):
    """What head office writes (fleet-wide or per store); every field has a default."""

    coupons: CouponKnobs = CouponKnobs()
    receipt: ReceiptSettings = ReceiptSettings()
    scan: ScanRules = ScanRules()
    devices: dict[Id, DeviceSettings] = Field(default={}, max_length=MAX_DEVICE_ENTRIES)


class ConfigRefusal(Frozen):
    """Why an agent refused the config it was sent; it keeps running on its last good one."""

    settings_version: Version | None = None
    config_hash: Hash | None = None
    reason: Annotated[str, Field(max_length=MAX_REASON_LEN)]
    at: AwareDatetime
