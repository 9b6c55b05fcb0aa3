"""Type names shared by the PostgreSQL modules."""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What a helper receives: a pooled connection, or a plain one (the migrate command's).
# A string: asyncpg's classes are generic only in its stubs, not at run time.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
