"""Mirror errors, split by what the caller can do.

DeviceError
└── MirrorError
    ├── MirrorUnavailableError  not found, refused, timed out, dropped, 5xx: retry later
    ├── MirrorProtocolError     answered, but not per protocol/mirror_api: fix the mirror
    └── MirrorRejectedError     refused our request with a 400: fix the request
"""

from agent.errors import DeviceError


class MirrorError(DeviceError):
    """Base of every mirror failure."""


class MirrorUnavailableError(MirrorError, ConnectionError):
    """The mirror cannot be reached right now; the same request may work later."""


class MirrorProtocolError(MirrorError):
    """The mirror answered with something protocol/mirror_api does not allow (or a wrong id)."""


class MirrorRejectedError(MirrorError):
    """The mirror refused a request as invalid (400); retrying it unchanged will not help."""
