"""Errors of the agent's coupon package, split by what the caller can do about them.

CouponServiceError (AgentError)
├── CloudUnreachable        no usable answer in time: use the offline policy, probe later
│   └── UnreadableConfig    GET /v1/config answered a body this agent cannot parse: refuse it
└── UnknownCoupon           the cloud answered that it never issued this coupon: refuse it
"""

from agent.errors import AgentError


class CouponServiceError(AgentError):
    """Root of the coupon package's own errors."""


class CloudUnreachable(CouponServiceError):
    """The cloud did not answer usably within the timeout (network, 5xx, garbage)."""


class UnknownCoupon(CouponServiceError):
    """The cloud has no such coupon (404 on reservation)."""


class UnreadableConfig(CloudUnreachable):
    """GET /v1/config sent a config this agent cannot read (newer cloud?); `etag` names it."""

    def __init__(self, reason: str, etag: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.etag = etag
