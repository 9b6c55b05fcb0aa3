"""Errors of the cloud package, split by what the caller can do about them.

CloudError
├── UsageError (ValueError)        bad setting or argument (DB URL, store id): fix the call
│   └── UnsupportedBackendError    the URL names a backend this build cannot use yet
├── Unavailable                    retry the same request after `retry_after` s (HTTP 503)
│   ├── StorageError               the database failed or is closed
│   └── Overloaded                 too many batches in flight
└── RequestError                   the HTTP caller sent something wrong: fix it, do not resend
    ├── BadRequest                 400
    ├── Unauthorized               401
    ├── EnrollmentRefused          403 (unknown, used or expired code: get a new code)
    ├── NotFound                   404
    ├── RequestTimeout             408 (the client sent too slowly)
    ├── PayloadTooLarge            413
    └── UnsupportedEncoding        415
"""

from typing import ClassVar


class CloudError(Exception):
    """Root of every error the cloud package raises on purpose."""


class UsageError(CloudError, ValueError):
    """A setting or argument is invalid; the message says which and why."""


class UnsupportedBackendError(UsageError):
    """The database URL names a backend this build does not support yet."""


class Unavailable(CloudError):
    """Temporarily unable to serve; the same request may succeed after `retry_after` seconds."""

    retry_after: ClassVar[int] = 5


class StorageError(Unavailable):
    """The storage backend failed or is closed; the operation may succeed if retried later."""


class Overloaded(Unavailable):
    """Too much work in flight; refused up front rather than queued without bound."""

    retry_after = 1


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


class RequestTimeout(RequestError):
    """The client did not send its request in time (HTTP 408, RFC 9110 §15.5.9)."""

    status = 408


class PayloadTooLarge(RequestError):
    """The body, compressed or not, is past the size limit (HTTP 413)."""

    status = 413


class UnsupportedEncoding(RequestError):
    """A Content-Encoding other than gzip or identity (HTTP 415, RFC 9110 §15.5.16)."""

    status = 415
