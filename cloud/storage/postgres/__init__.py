"""PostgreSQL storage for fleet scale: `PostgresStorage`, migrations as numbered SQL files."""

from cloud.storage.postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]
