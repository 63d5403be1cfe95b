"""The shared token bucket, on an injected clock: it spaces requests without any real waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reactor.config import AskCodySettings
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient
from tests.support.scim_server import ScimServer


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def bucket(rate: float, burst: float | None = None) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


async def test_a_burst_then_one_every_period() -> None:
    limiter, clock = bucket(rate=10, burst=3)
    times = []
    for _ in range(6):
        await limiter.acquire()
        times.append(round(clock.now, 6))
    assert times == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]


async def test_tokens_refill_while_idle_up_to_the_burst() -> None:
    limiter, clock = bucket(rate=2, burst=2)
    await limiter.acquire()
    await limiter.acquire()
    assert not limiter.try_acquire()
    clock.now += 10  # idle for long: only `burst` tokens come back
    assert limiter.tokens == 2
    assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()


async def test_concurrent_workers_share_the_rate() -> None:
    limiter, clock = bucket(rate=5, burst=1)
    done: list[tuple[int, float]] = []

    async def worker(n: int) -> None:
        waited = await limiter.acquire()
        done.append((n, round(clock.now, 6)))
        assert waited >= 0

    await asyncio.gather(*(worker(n) for n in range(5)))
    assert [t for _, t in done] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert [n for n, _ in done] == [0, 1, 2, 3, 4]  # first come, first served


async def test_the_client_takes_a_token_per_request(server: ScimServer, settings_for: Callable[..., AskCodySettings]) -> None:
    limiter, clock = bucket(rate=4, burst=1)
    async with AskCodyClient(settings_for(server.url, server.token), limiter) as client:
        for _ in range(5):
            await client.find_user("nobody", with_groups=False)
    assert round(clock.now, 6) == 1.0  # 5 requests at 4/s after a burst of 1
    assert [round(s, 6) for s in clock.sleeps] == [0.25] * 4


def test_defaults_and_validation() -> None:
    assert TokenBucket(25).burst == 25
    assert TokenBucket(0.5).burst == 1
    for bad in ((0, None), (1, 0.5)):
        try:
            TokenBucket(*bad)
        except ValueError:
            continue
        raise AssertionError(f"TokenBucket{bad} accepted")
