"""Agent tokens and enrollment codes: generation and the hashes the database keeps."""

import base64
import hashlib
import secrets

# 32 random bytes = 256 bits of entropy. A token that strong cannot be brute-forced from its
# hash, so one SHA-256 suffices (a slow KDF such as scrypt only protects low-entropy passwords)
# and lookup by hash stays one indexed query on the ingest hot path.
TOKEN_BYTES = 32
# 10 bytes = 80 bits, shown as 16 base32 characters in groups of four: typeable by a field
# engineer, and single-use plus a 24 h expiry make guessing hopeless.
CODE_BYTES = 10


def new_agent_token() -> str:
    """A fresh agent bearer token; only `hash_secret(token)` is ever stored."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_agent_id() -> str:
    """A fresh agent id matching protocol `Id`."""
    return "agt-" + secrets.token_hex(8)


def new_enroll_code() -> str:
    """A fresh code like `ABCD-EFGH-IJKL-MNOP` (RFC 4648 base32 alphabet)."""
    text = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalize_code(code: str) -> str:
    """The canonical form of a typed code: case, spaces and dashes do not matter."""
    return "".join(code.split()).replace("-", "").upper()


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a high-entropy secret (token or normalized code)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hash_code(code: str) -> str:
    """The stored hash of an enrollment code, whatever way it was typed."""
    return hash_secret(normalize_code(code))
