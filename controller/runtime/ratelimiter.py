"""Rate limiters that decide how long a failed item waits before it is retried (client-go ``workqueue``).

A limiter answers ``when(item)`` (seconds to wait, and the call itself counts as one more failure),
``forget(item)`` (the item succeeded: reset its history) and ``num_requeues(item)``. The controller default,
:func:`default_controller_rate_limiter`, is controller-runtime's: the slower of a per-item exponential backoff
and one token bucket shared by all items, so a failure storm cannot hammer the API server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[T_contra]):
    """What a work queue needs from a limiter; all methods are called from the event loop thread."""

    def when(self, item: T_contra) -> float:
        """Seconds to wait before ``item`` is retried; records one more failure."""
        ...

    def forget(self, item: T_contra) -> None:
        """Drop the failure history of ``item`` (it succeeded or is gone)."""
        ...

    def num_requeues(self, item: T_contra) -> int:
        """How many failures of ``item`` are on record."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base * 2**failures`` per item, capped: 5 ms, 10 ms, 20 ms ... up to 1000 s by default."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if base < 0 or cap < 0:
            raise ValueError("base and cap must not be negative")
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp >= 1000:  # 2.0**1024 overflows; the cap was reached long before
            return self.cap
        return min(self.base * 2.0**exp, self.cap)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket shared by every item (golang.org/x/time/rate ``Reserve`` semantics).

    Each ``when`` call takes a token whether or not one is available; a deficit turns into a delay of
    ``deficit / qps``. So within a burst retries are immediate, and beyond it they are spaced ``1/qps`` apart.
    The bucket keeps no per-item state, hence ``forget`` does nothing and ``num_requeues`` is always 0.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps) - 1.0
        self._last = now
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class ItemFastSlowRateLimiter:
    """``fast_delay`` for the first ``max_fast_attempts`` failures of an item, ``slow_delay`` after that.

    Suits polling-style retries ("check again soon a few times, then back off to a slow cadence").
    """

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        if fast_delay < 0 or slow_delay < 0 or max_fast_attempts < 0:
            raise ValueError("delays and max_fast_attempts must not be negative")
        self.fast_delay = fast_delay
        self.slow_delay = slow_delay
        self.max_fast_attempts = max_fast_attempts
        self._attempts: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        attempts = self._attempts.get(item, 0) + 1
        self._attempts[item] = attempts
        return self.fast_delay if attempts <= self.max_fast_attempts else self.slow_delay

    def forget(self, item: Hashable) -> None:
        self._attempts.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._attempts.get(item, 0)


class MaxOfRateLimiter(Generic[T]):
    """The longest delay any of the limiters asks for; every limiter records the failure."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: T) -> float:
        # Every limiter must see the failure (no short-circuit), or its backoff would not advance.
        return max([limiter.when(item) for limiter in self.limiters])

    def forget(self, item: T) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


class WithMaxWaitRateLimiter(Generic[T]):
    """Caps another limiter's delay at ``max_wait`` so no item sleeps longer than that."""

    def __init__(self, limiter: RateLimiter[T], max_wait: float) -> None:
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.limiter = limiter
        self.max_wait = max_wait

    def when(self, item: T) -> float:
        return min(self.limiter.when(item), self.max_wait)

    def forget(self, item: T) -> None:
        self.limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.limiter.num_requeues(item)


def default_controller_rate_limiter() -> MaxOfRateLimiter[Hashable]:
    """controller-runtime's default: MaxOf(exponential 5 ms .. 1000 s per item, bucket 10 qps burst 100)."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=10.0, burst=100),
    )


__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "WithMaxWaitRateLimiter",
    "default_controller_rate_limiter",
]
