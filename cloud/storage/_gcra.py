"""GCRA (the generic cell rate algorithm): a token bucket kept as one timestamp per key.

`tat` (theoretical arrival time) is when the bucket would be full again. A request of `cost`
units is admitted while `max(tat, now) + cost/rate - now <= burst/rate`; admitting moves `tat`
by `cost/rate`. One number per key means one row and one UPDATE per admission, in any database.
"""

from cloud.storage.base import RateLimit


def gcra(
    tat: float | None, now: float, cost: float, limit: RateLimit
) -> tuple[float | None, float]:
    """(new tat, 0.0) when admitted; (None, seconds until it would be) when refused."""
    start = now if tat is None or tat < now else tat
    new_tat = start + cost / limit.rate
    excess = new_tat - now - limit.burst / limit.rate
    if excess > 0:
        return None, excess
    return new_tat, 0.0
