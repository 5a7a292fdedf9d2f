"""Token bucket for ICMP error rate limiting (appliance/core/ratelimit.py)."""

from __future__ import annotations

import pytest

from appliance.core.ratelimit import TokenBucket


def allowed(bucket: TokenBucket, now: float, attempts: int) -> int:
    return sum(bucket.allow(now) for _ in range(attempts))


def test_burst_then_refusal() -> None:
    bucket = TokenBucket(10, burst=5)
    assert allowed(bucket, 0.0, 8) == 5
    assert bucket.denied == 3


def test_refill_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(10, burst=5)
    assert allowed(bucket, 0.0, 5) == 5
    assert not bucket.allow(0.05)  # half a token
    assert bucket.allow(0.1)  # one token earned at 10/s
    assert not bucket.allow(0.1)
    assert allowed(bucket, 0.4, 10) == 3
    # A long idle time refills only to the burst.
    assert allowed(bucket, 100.0, 10) == 5


def test_default_burst_is_one_second_of_rate() -> None:
    bucket = TokenBucket(200)
    assert bucket.burst == 200
    assert allowed(bucket, 0.0, 300) == 200
    assert allowed(bucket, 1.0, 300) == 200
    assert TokenBucket(0.5).burst == 1


def test_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(0)
    assert bucket.unlimited
    assert allowed(bucket, 0.0, 10_000) == 10_000
    assert bucket.denied == 0


def test_clock_going_backwards_earns_nothing() -> None:
    bucket = TokenBucket(1, burst=1)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert not bucket.allow(10.5)
    assert bucket.allow(11.0)


def test_set_rate_keeps_earned_tokens_up_to_new_burst() -> None:
    bucket = TokenBucket(100)
    assert allowed(bucket, 0.0, 40) == 40  # 60 left
    bucket.set_rate(10)
    assert bucket.burst == 10
    assert bucket.tokens(0.0) == 10
    bucket.set_rate(0)
    assert allowed(bucket, 0.0, 50) == 50
    bucket.set_rate(1, burst=2)  # leaving "unlimited" starts full
    assert allowed(bucket, 0.0, 5) == 2


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1)
    with pytest.raises(ValueError):
        TokenBucket(5, burst=0.5)
