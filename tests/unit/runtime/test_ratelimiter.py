from __future__ import annotations

from collections.abc import Hashable

import pytest

from controller.runtime.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exponential_doubles_from_base_per_item() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    assert [limiter.when("a") for _ in range(4)] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert limiter.when("b") == pytest.approx(0.005)  # items back off independently
    assert limiter.num_requeues("a") == 4
    assert limiter.num_requeues("b") == 1


def test_exponential_reaches_the_cap_on_the_nineteenth_failure_and_stays_there() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(19)]
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655 s, still below the cap
    assert delays[18] == 1000.0
    for _ in range(2000):  # far beyond float range of 2**n: no overflow, still the cap
        assert limiter.when("a") == 1000.0


def test_exponential_forget_restarts_at_base() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    limiter.when("a")
    limiter.when("a")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_bucket_allows_the_burst_then_spaces_calls_by_one_over_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=100, clock=clock)
    assert all(limiter.when(i) == 0.0 for i in range(100))
    # Every further call reserves a token of its own, so the delays grow by 100 ms each.
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_with_time_up_to_burst() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.when("x")
    assert limiter.when("x") == pytest.approx(0.1)  # deficit of one token
    clock.now += 0.35  # 3.5 tokens back; the deficit of 1 leaves 2.5
    assert limiter.when("x") == 0.0
    assert limiter.when("x") == 0.0
    assert limiter.when("x") == pytest.approx(0.05)
    clock.now += 3600  # a long idle period refills only up to the burst
    assert sum(1 for _ in range(10) if limiter.when("x") == 0.0) == 5


def test_bucket_keeps_no_per_item_history() -> None:
    limiter = BucketRateLimiter(qps=1.0, burst=1, clock=FakeClock())
    limiter.when("a")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


@pytest.mark.parametrize(("qps", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bucket_rejects_settings_that_would_never_grant_a_token(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        BucketRateLimiter(qps=qps, burst=burst)


def test_fast_slow_switches_after_max_fast_attempts() -> None:
    limiter = ItemFastSlowRateLimiter(0.1, 5.0, 2)
    assert [limiter.when("a") for _ in range(4)] == [0.1, 0.1, 5.0, 5.0]
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert limiter.when("a") == 0.1


def test_max_of_returns_the_longest_delay_and_advances_every_limiter() -> None:
    fast_slow = ItemFastSlowRateLimiter(0.001, 3.0, 1)
    exponential = ItemExponentialFailureRateLimiter(0.5, 100.0)
    limiter = MaxOfRateLimiter[Hashable](fast_slow, exponential)
    assert limiter.when("a") == 0.5
    assert limiter.when("a") == 3.0
    assert limiter.when("a") == 3.0
    assert limiter.when("a") == 4.0
    assert fast_slow.num_requeues("a") == exponential.num_requeues("a") == 4
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_with_max_wait_caps_the_inner_delay() -> None:
    inner = ItemExponentialFailureRateLimiter(1.0, 1000.0)
    limiter = WithMaxWaitRateLimiter[Hashable](inner, 3.0)
    assert [limiter.when("a") for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert inner.num_requeues("a") == 0


def test_default_controller_limiter_is_exponential_5ms_capped_1000s_maxed_with_bucket_10qps_burst_100() -> None:
    limiter = default_controller_rate_limiter()
    exponential, bucket = limiter.limiters
    assert isinstance(exponential, ItemExponentialFailureRateLimiter)
    assert (exponential.base, exponential.cap) == (0.005, 1000.0)
    assert isinstance(bucket, BucketRateLimiter)
    assert (bucket.qps, bucket.burst) == (10.0, 100)
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("a") == pytest.approx(0.01)


def test_default_limiter_spaces_a_failure_storm_by_the_bucket() -> None:
    limiter = default_controller_rate_limiter()
    delays = [limiter.when(i) for i in range(150)]  # 150 distinct items failing at once
    assert max(delays[:100]) == pytest.approx(0.005)  # within the burst only the per-item backoff counts
    assert delays[149] > 4.0  # 50 tokens beyond the burst at 10 qps: about five seconds out


def test_limiters_satisfy_the_protocol_for_any_item_type() -> None:
    limiters: list[RateLimiter[str]] = [
        ItemExponentialFailureRateLimiter(),
        BucketRateLimiter(),
        ItemFastSlowRateLimiter(0.1, 1.0, 3),
        default_controller_rate_limiter(),
        WithMaxWaitRateLimiter[Hashable](ItemExponentialFailureRateLimiter(), 1.0),
    ]
    for limiter in limiters:
        assert limiter.when("key") >= 0.0
