"""Storage backends behind one interface (`Storage`); `open_storage(url)` picks one by scheme."""

from urllib.parse import urlsplit

from cloud.errors import UsageError
from cloud.storage.base import Storage

__all__ = ["DEFAULT_POOL_SIZE", "Storage", "check_db_url", "open_storage", "sqlite_path"]

DEFAULT_POOL_SIZE = 8  # PostgreSQL connections per replica (cloud.storage.postgres)
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def sqlite_path(url: str) -> str:
    """The file path in `sqlite:///relative.db`, `sqlite:////abs/path.db` or `sqlite:///:memory:`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise UsageError(f"invalid SQLite URL {url!r}: expected sqlite:///PATH")
    return url[len(prefix) :]


def check_db_url(url: str) -> str:
    """The backend a URL selects (`"sqlite"` or `"postgresql"`), or UsageError saying why not."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        sqlite_path(url)
        return scheme
    if scheme in _POSTGRES_SCHEMES:
        if not urlsplit(url).path.strip("/"):
            raise UsageError(f"invalid PostgreSQL URL {url!r}: name the database, e.g. /storeedge")
        return "postgresql"
    raise UsageError(
        f"unknown database URL scheme {scheme!r}: expected sqlite:/// or postgresql://"
    )


async def open_storage(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> Storage:
    """Open (and migrate) the backend named by the URL scheme; UsageError for a bad URL."""
    if check_db_url(url) == "postgresql":
        from cloud.storage.postgres import PostgresStorage

        return await PostgresStorage.open(url, pool_size=pool_size)
    from cloud.storage.sqlite import SqliteStorage

    return await SqliteStorage.open(sqlite_path(url))
