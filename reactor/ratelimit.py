"""A token bucket for asyncio: one instance shared by every worker that talks to AskCody.

Tokens refill continuously at ``rate`` per second up to ``burst``. :meth:`TokenBucket.acquire`
takes one token, waiting when there is none; waiters are served first come, first served. The clock
and the sleep are injectable, so tests advance a fake clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]

EPSILON = 1e-9
"""Rounding slack: a refill that lands a hair below a whole token counts as the token."""
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """At most ``burst`` requests at once, ``rate`` per second sustained.

    :param rate: tokens added per second (``askcody.max_requests_per_second``).
    :param burst: the bucket's capacity; defaults to ``max(1, rate)``. The bucket starts full.
    :param clock: a monotonic clock in seconds (``time.monotonic``).
    :param sleep: how to wait (``asyncio.sleep``).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if they are available now, without waiting."""
        if self._lock.locked():
            return False
        self._refill()
        if self._tokens >= tokens - EPSILON:
            self._tokens -= tokens
            return True
        return False

    async def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``, waiting until they are available; return the seconds waited."""
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        waited = 0.0
        async with self._lock:
            self._refill()
            while self._tokens < tokens - EPSILON:
                delay = (tokens - self._tokens) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
            self._tokens -= tokens
        return waited
