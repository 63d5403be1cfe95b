"""The renewal loop over 60 days of simulated time: never a moment without a live subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from graphsim import GraphSimulator
from reactor.times import parse_iso
from subscriptions.manager import SubscriptionManager
from subscriptions.renewal import run_renewal
from tests.support.eventually import eventually

Factory = Callable[..., SubscriptionManager]
DAY = 86400.0


async def test_sixty_days_of_renewals_without_a_gap(
    sim: GraphSimulator, make_manager: Factory, clock: Any, gaps: list[str]
) -> None:
    sim.subscription_lifetime_cap = timedelta(hours=12)
    manager = make_manager(verify_interval=6 * 3600)
    await manager.load()
    start = clock.now
    stop = asyncio.Event()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        end = clock.now + seconds
        for resource in ("users", "groups"):
            live = [parse_iso(s["expirationDateTime"]) for s in sim.subscriptions.values() if s["resource"] == resource]
            assert live and max(live) > end, f"{resource} would lapse while the loop sleeps until {end - start:.0f} s"
        sleeps.append(seconds)
        clock.now = end
        if clock.now - start >= 60 * DAY:
            stop.set()
        await asyncio.sleep(0)

    await asyncio.wait_for(run_renewal(manager, sleep=sleep, stop=stop), timeout=120)
    assert clock.now - start >= 60 * DAY
    assert gaps == []
    assert sim.calls["create_subscription"] == 2
    assert sim.calls["renew_subscription"] >= 2 * (60 * 24 // 6) - 2  # every 6 h per resource
    assert manager.status().ok
    assert max(sleeps) <= 3600


async def test_loop_survives_unexpected_errors_and_stops_on_request(make_manager: Factory, clock: Any) -> None:
    manager = make_manager()
    ticks = 0

    async def broken_tick() -> float:
        nonlocal ticks
        ticks += 1
        raise RuntimeError("bug")

    manager.tick = broken_tick  # type: ignore[method-assign]
    stop = asyncio.Event()
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            stop.set()

    await run_renewal(manager, sleep=sleep, stop=stop, error_delay=42)
    assert ticks == 3 and delays == [42, 42, 42]


async def test_loop_with_real_waiting_stops_promptly(make_manager: Factory) -> None:
    manager = make_manager()
    await manager.load()
    stop = asyncio.Event()
    task = asyncio.create_task(run_renewal(manager, stop=stop))
    await eventually(lambda: manager.record("users") is not None and manager.record("groups") is not None)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
