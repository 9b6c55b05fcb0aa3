"""Errors of the cloud package, split by what the caller can do about them.

CloudError
├── UsageError (ValueError)        bad setting or argument (DB URL, store id): fix the call
├── Unavailable                    retry the same request after `retry_after` s (HTTP 503)
│   ├── StorageError               the database failed or is closed
│   └── Overloaded                 too many batches in flight, or no DB connection free
├── RateLimited                    this agent is over its rate: wait `retry_after` s (HTTP 429)
└── RequestError                   the HTTP caller sent something wrong: fix it, do not resend
    ├── BadRequest                 400
    ├── Unauthorized               401
    ├── EnrollmentRefused          403 (unknown, used or expired code: get a new code)
    ├── NotFound                   404
    ├── Conflict                   409 (changed since the caller read it: read again)
    ├── RequestTimeout             408 (the client sent too slowly)
    ├── PayloadTooLarge            413
    └── UnsupportedEncoding        415
"""

from typing import ClassVar


class CloudError(Exception):
    """Root of every error the cloud package raises on purpose."""


class UsageError(CloudError, ValueError):
    """A setting or argument is invalid; the message says which and why."""


class Unavailable(CloudError):
    """Temporarily unable to serve; the same request may succeed after `retry_after` seconds."""

    retry_after: ClassVar[int] = 5


class StorageError(Unavailable):
    """The storage backend failed or is closed; the operation may succeed if retried later."""


class Overloaded(Unavailable):
    """Too much work in flight; refused up front rather than queued without bound.

    Answered with a Retry-After drawn from 1..`retry_after` s (cloud.middleware), so the
    agents a burst turned away do not all come back in the same second.
    """

    retry_after = 4


class RateLimited(CloudError):
    """One agent sends faster than its limit; the same request succeeds after `retry_after` s.

    A 429 rather than a 503: the service is fine, this caller must slow down (RFC 6585 §4).
    """

    def __init__(self, message: str, retry_after: float, reason: str = "rate_limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason  # the metrics label: rate_limited, heartbeat_too_soon


class RequestError(CloudError):
    """A request the client must change before sending again; `key` labels the counter."""

    status: ClassVar[int] = 400

    def __init__(self, reason: str, key: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key or type(self).__name__.lower()


class BadRequest(RequestError):
    """Malformed body or query parameter (HTTP 400)."""

    status = 400


class Unauthorized(RequestError):
    """Missing, unknown or revoked bearer token (HTTP 401)."""

    status = 401


class EnrollmentRefused(RequestError):
    """The enrollment code is unknown, already used or expired (HTTP 403)."""

    status = 403


class NotFound(RequestError):
    """The named resource does not exist (HTTP 404)."""

    status = 404


class Conflict(RequestError):
    """The resource changed since the version the caller named (HTTP 409)."""

    status = 409


class RequestTimeout(RequestError):
    """The client did not send its request in time (HTTP 408, RFC 9110 §15.5.9)."""

    status = 408


class PayloadTooLarge(RequestError):
    """The body, compressed or not, is past the size limit (HTTP 413)."""

    status = 413


class UnsupportedEncoding(RequestError):
    """A Content-Encoding other than gzip or identity (HTTP 415, RFC 9110 §15.5.16)."""

    status = 415
