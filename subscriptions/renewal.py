"""The renewal loop: one background task that keeps our subscriptions alive.

It sleeps until the next thing is due (a renewal at ``renew_when_remaining_share`` of the lifetime, a
periodic read-back, or a retry after a failure), never longer than ``max_interval``. ``sleep`` is
injected so a test can run weeks of simulated time in a second; ``stop`` ends the loop cleanly
(cancelling the task works too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from reactor import log
from subscriptions.manager import SubscriptionManager


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_renewal(
    manager: SubscriptionManager,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
    min_interval: float = 1.0,
    max_interval: float = 3600.0,
    error_delay: float = 60.0,
) -> None:
    """Run :meth:`SubscriptionManager.tick` until ``stop`` is set; the first pass happens at once."""
    stop = stop if stop is not None else asyncio.Event()
    while not stop.is_set():
        try:
            delay = await manager.tick()
        except Exception as exc:  # a bug or a store failure must not end renewals for good
            log.event("renewal_pass_failed", level="error", error=repr(exc))
            delay = error_delay
        delay = min(max(delay, min_interval), max_interval)
        if stop.is_set():
            break
        if sleep is None:
            await _wait(stop, delay)
        else:
            await sleep(delay)
