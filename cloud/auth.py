"""Bearer tokens: agents by token hash (briefly cached), the admin by constant-time compare."""

import hmac
import time

from aiohttp import web

from cloud.credentials import hash_secret
from cloud.errors import Unauthorized
from cloud.storage.base import AgentIdentity, Storage

# How long a verified agent token is trusted without asking storage again: ingest would
# otherwise queue one lookup per request behind the batch writes on the storage thread.
# A revocation through this process is immediate (`forget`); through another, within this.
AUTH_CACHE_TTL_S = 10.0
# Bounds memory; far above the agents one instance serves within a TTL.
AUTH_CACHE_MAX = 100_000


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>`, or Unauthorized."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token", key="no_token")
    return token


def require_admin(request: web.Request, admin_token: str) -> None:
    """Pass only a request carrying the admin token."""
    token = bearer_token(request)
    if not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise Unauthorized("invalid admin token", key="bad_admin_token")


class AgentAuthenticator:
    """Agent bearer token → identity; caches successes only, so forged tokens never fill it."""

    def __init__(self, storage: Storage, ttl_s: float = AUTH_CACHE_TTL_S) -> None:
        self._storage = storage
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[AgentIdentity, float]] = {}

    async def async_authenticate(self, request: web.Request) -> AgentIdentity:
        """The agent behind the request's bearer token, or Unauthorized."""
        token_hash = hash_secret(bearer_token(request))
        now = time.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = await self._storage.authenticate(token_hash)
        if identity is None:
            self._cache.pop(token_hash, None)
            raise Unauthorized("unknown or revoked agent token", key="bad_agent_token")
        if len(self._cache) >= AUTH_CACHE_MAX:
            self._cache.clear()
        self._cache[token_hash] = (identity, now + self._ttl_s)
        return identity

    def forget(self, agent_id: str) -> None:
        """Drop any cached token of this agent (after a revocation)."""
        for key, (identity, _) in list(self._cache.items()):
            if identity.agent_id == agent_id:
                del self._cache[key]
