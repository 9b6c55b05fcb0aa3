"""Console passwords: Argon2id (memory-hard, RFC 9106) via argon2-cffi, always off the loop."""

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloud.console.settings import ConsoleSettings
from cloud.errors import UsageError

MIN_PASSWORD_LEN = 12
MAX_PASSWORD_LEN = 1024  # bounds the hashing work an anonymous login can ask for


def hasher(settings: ConsoleSettings) -> PasswordHasher:
    """An Argon2id hasher with the configured cost."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def check_new_password(password: str) -> str:
    """`password` if acceptable for a new account, else UsageError saying why."""
    if len(password) < MIN_PASSWORD_LEN:
        raise UsageError(f"password must be at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        raise UsageError(f"password must be at most {MAX_PASSWORD_LEN} characters")
    return password


class Passwords:
    """Hash and verify in a worker thread (each call costs ~64 MiB and tens of ms)."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._hasher = hasher(settings)
        self._dummy: str | None = None

    async def async_hash(self, password: str) -> str:
        """The encoded hash (salt and parameters included)."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def async_verify(self, encoded: str | None, password: str) -> bool:
        """True when `password` matches `encoded`; None (unknown user) costs the same and fails."""
        if len(password) > MAX_PASSWORD_LEN:
            return False
        if encoded is None:
            if self._dummy is None:
                self._dummy = await self.async_hash(secrets.token_urlsafe(16))
            await asyncio.to_thread(self._check, self._dummy, password)
            return False
        return await asyncio.to_thread(self._check, encoded, password)

    def needs_rehash(self, encoded: str) -> bool:
        """True when `encoded` was made with other parameters than the configured ones."""
        return self._hasher.check_needs_rehash(encoded)

    def _check(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return False
