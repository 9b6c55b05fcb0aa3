"""Opening an asyncpg pool the way every PostgreSQL storage here does."""

from collections.abc import Mapping
from typing import Any

import asyncpg

from cloud.errors import StorageError

# Errors a database call can raise that mean "the database failed", not "the caller erred".
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# A statement running longer than this is cancelled (the caller gets StorageError).
COMMAND_TIMEOUT_S = 30.0


async def open_pool(
    url: str,
    size: int,
    server_settings: Mapping[str, str],
    **options: Any,
) -> "asyncpg.Pool[asyncpg.Record]":
    """A pool of up to `size` connections to `url` (`options`: more create_pool arguments,
    e.g. `init`); StorageError when it cannot connect."""
    try:
        return await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings=dict(server_settings),
            **options,
        )
    except (*DB_ERRORS, ValueError) as exc:
        raise StorageError(f"cannot open database: {exc}") from exc
