"""After failures, the first success of the same kind gives every object of that kind backing off
one early try.

An AskCody outage leaves many objects backing off (up to ``retry_max_seconds``); when AskCody
answers again, waiting out those backoffs only delays the changes. The early try is limited to one
per backoff period, so an object that fails for its own reasons does not spin while others succeed.

On virtual time: the dispatcher reads the time from ``clock=``, which only moves when the test
advances it; a submit wakes the workers, which then see the new time. Nothing waits for seconds.
"""

from __future__ import annotations

from collections import Counter

from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.errors import TransientError
from reactor.store import SQLiteStore
from tests.support.eventually import eventually
from tests.support.journal import journal


class VirtualClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_objects_backing_off_run_as_soon_as_a_unit_succeeds_again(store: SQLiteStore) -> None:
    clock = VirtualClock()
    outage = True
    handled: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        if outage and unit.kind == "user":  # users need AskCody; lifecycle units only Graph
            raise TransientError("AskCody is unavailable", status=503)
        handled.append(unit.object_id)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=30.0, retry_max_seconds=60.0, clock=clock)
    await dispatcher.start()
    try:
        dispatcher.submit(await journal(store, "u-a", "u-b"))
        await eventually(lambda: dispatcher.failures >= 2, "both users failed once", timeout=2)  # now backing off 30 s
        # A unit of another kind succeeds during the outage: it says nothing about AskCody, and
        # must not spend the early tries of the users.
        dispatcher.submit(await journal(store, "s-lifecycle", kind="lifecycle"))
        await eventually(lambda: "s-lifecycle" in handled, "the lifecycle unit ran", timeout=2)
        assert dispatcher.failures == 2, "a success of another kind released the users' backoff"
        outage = False
        dispatcher.submit(await journal(store, "u-new"))
        # The clock does not move: without the early try u-a and u-b would wait 30 virtual seconds.
        await eventually(lambda: {"u-a", "u-b", "u-new"} <= set(handled), "the users backing off ran early", timeout=2)
        assert clock.now == 1000.0
        assert await dispatcher.wait_idle(2)
    finally:
        await dispatcher.stop()


async def test_an_object_that_keeps_failing_gets_one_early_try_per_backoff_period(store: SQLiteStore) -> None:
    clock = VirtualClock()
    attempts: list[float] = []
    handled: set[str] = set()

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == "u-broken":
            attempts.append(clock())
            raise TransientError("this user cannot be synced yet", status=503)
        handled.add(unit.object_id)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=1.0, retry_max_seconds=1.0, clock=clock)
    await dispatcher.start()
    try:
        traffic = await journal(store, *(f"u-ok-{n}" for n in range(150)))
        dispatcher.submit(await journal(store, "u-broken"))
        await eventually(lambda: len(attempts) == 1, "the first attempt", timeout=2)
        started = clock()
        # 3 virtual seconds of steady traffic that succeeds: one new object every 20 ms, each
        # handled before the next arrives (its submit also wakes the workers to the new time).
        for entry in traffic:
            clock.advance(0.02)
            dispatcher.submit([entry])
            await eventually(lambda e=entry: e.object_id in handled, f"{entry.object_id} handled", timeout=2, interval=0.001)
        window = [t - started for t in attempts[1:]]
        # A 1 s backoff allows 3 natural tries in 3 s, and at most one early try after each;
        # without the limit the broken object would run after every one of the 150 successes.
        assert 3 <= len(window) <= 6, f"{len(window)} attempts in 3 virtual seconds: {window}"
        per_second = Counter(int(t) for t in window)
        assert max(per_second.values()) <= 2, f"more than one early try in a backoff period: {window}"
    finally:
        await dispatcher.stop()
