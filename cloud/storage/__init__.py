"""Storage backends behind one interface (`Storage`); `open_storage(url)` picks one by scheme."""

from urllib.parse import urlsplit

from cloud.errors import UnsupportedBackendError, UsageError
from cloud.storage.base import Storage

__all__ = ["Storage", "check_db_url", "open_storage", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """The file path in `sqlite:///relative.db`, `sqlite:////abs/path.db` or `sqlite:///:memory:`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise UsageError(f"invalid SQLite URL {url!r}: expected sqlite:///PATH")
    return url[len(prefix) :]


def check_db_url(url: str) -> str:
    """The backend a URL selects (`"sqlite"`), or UsageError saying why it cannot be served."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        sqlite_path(url)
        return scheme
    if scheme in ("postgresql", "postgres"):
        raise UnsupportedBackendError(
            "PostgreSQL storage is not supported yet; use a sqlite:///PATH database URL"
        )
    raise UsageError(
        f"unknown database URL scheme {scheme!r}: expected sqlite:/// or postgresql://"
    )


async def open_storage(url: str) -> Storage:
    """Open the backend named by the URL scheme; UsageError for a URL it cannot serve."""
    check_db_url(url)
    from cloud.storage.sqlite import SqliteStorage

    return await SqliteStorage.open(sqlite_path(url))
