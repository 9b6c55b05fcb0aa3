"""Retry timing: full jitter under the cap, Retry-After as a floor, slow retries on 401."""

import random
from datetime import UTC, datetime

import pytest
from tenacity import RetryCallState

from agent.sync.backoff import SLOW_RETRY_S, FullJitterRetryAfter
from agent.sync.client import RetryableError, UnauthorizedError, parse_retry_after


def _state(attempt: int, error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_waits_are_full_jitter_below_the_exponential_ceiling_and_capped() -> None:
    wait = FullJitterRetryAfter(base=0.5, cap=60, rng=random.Random(1))
    for attempt in range(1, 30):
        samples = [wait(_state(attempt, RetryableError("x"))) for _ in range(200)]
        ceiling = min(60, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(samples) < ceiling * 0.2
        assert max(samples) > ceiling * 0.8


def test_retry_after_is_a_floor() -> None:
    wait = FullJitterRetryAfter(base=0.5, cap=60, rng=random.Random(1))
    assert all(wait(_state(1, RetryableError("x", retry_after=7))) >= 7 for _ in range(50))


def test_unauthorized_backs_off_slowly_instead_of_hammering() -> None:
    wait = FullJitterRetryAfter(base=0.5, cap=60, rng=random.Random(1))
    assert wait(_state(1, UnauthorizedError("revoked"))) >= min(SLOW_RETRY_S, 300)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("Mon, 23 Nov 2026 00:00:30 GMT", 30.0),
        ("Mon, 22 Nov 2026 00:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(header: str | None, expected: float) -> None:
    now = datetime(2026, 11, 23, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == expected
