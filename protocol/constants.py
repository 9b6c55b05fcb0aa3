"""Wire constants both sides agree on."""

from typing import Final

# Bumped on any incompatible envelope change; the cloud rejects versions it does not know.
SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMAS: Final = frozenset({1})

# Limits of one POST /v1/events: the agent batches under them, the cloud enforces them (413/400).
MAX_BATCH_EVENTS: Final = 1000
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024  # decompressed JSON body
MAX_EVENT_BYTES: Final = 128 * 1024

# Identifier and text limits, so one hostile field cannot blow up storage or the console.
MAX_ID_LEN: Final = 64
MAX_TEXT_LEN: Final = 8 * 1024
MAX_RAW_B64_LEN: Final = 16 * 1024

# The only kinds the agent may drop, oldest first, when the outbox hits its byte cap
# (DESIGN.md guarantee 5). An allowlist: a kind added later is never dropped by accident,
# so coupons, sales and print outcomes are always kept.
DROPPABLE_KINDS: Final = frozenset({"scan", "mirror.session", "mirror.tryon"})
