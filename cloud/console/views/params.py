"""Query-string parsing for console pages: bad values get a 400 page naming the parameter."""

from collections.abc import Collection, Mapping
from typing import TypeVar

from cloud.errors import BadRequest, UsageError
from cloud.fleet import validate_id

T = TypeVar("T", bound=str)
MAX_PAGE = 1_000_000
MAX_SEARCH = 64


def choice(
    query: Mapping[str, str], name: str, allowed: Collection[T], default: T | None
) -> T | None:
    """`query[name]` if it is one of `allowed` (empty means `default`), else BadRequest."""
    value = query.get(name, "")
    if value == "":
        return default
    for option in allowed:
        if value == option:
            return option
    raise BadRequest(
        f"{name}: {value[:40]!r} is not one of {', '.join(sorted(allowed))}",
        key=f"console_bad_{name}",
    )


def flag(query: Mapping[str, str], name: str) -> bool:
    """True for `name=1` (or on/true), False when absent or empty."""
    value = query.get(name, "")
    if value in ("", "0", "false", "off"):
        return False
    if value in ("1", "true", "on"):
        return True
    raise BadRequest(f"{name}: expected 1 or 0", key=f"console_bad_{name}")


def page(query: Mapping[str, str]) -> int:
    """The 1-based page number."""
    value = query.get("page", "1") or "1"
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadRequest(f"page: expected a number 1..{MAX_PAGE}", key="console_bad_page")
    return int(value)


def search(query: Mapping[str, str]) -> str:
    """The search text, trimmed and bounded."""
    return query.get("q", "").strip()[:MAX_SEARCH]


def store_id(value: str) -> str:
    """A valid store id, else BadRequest."""
    try:
        return validate_id(value, "store id")
    except UsageError as exc:
        raise BadRequest(str(exc), key="console_bad_store") from exc


def optional_store(query: Mapping[str, str]) -> str | None:
    """The `store` filter, if given."""
    value = query.get("store", "").strip()
    return store_id(value) if value else None
