"""JSON responses, serialized with orjson."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

# OPT_UTC_Z: "…Z" rather than "+00:00", the form most tools and people expect.
_OPTIONS = orjson.OPT_UTC_Z


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`data` as an application/json response."""
    return web.Response(
        body=orjson.dumps(data, option=_OPTIONS),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def error_response(
    status: int, reason: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The one error shape of the API: `{"error": reason}`."""
    return json_response({"error": reason}, status=status, headers=headers)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC text of a datetime, `Z`-suffixed, or None."""
    if value is None:
        return None
    return orjson.dumps(value, option=_OPTIONS).decode()[1:-1]
