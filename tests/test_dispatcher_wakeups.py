"""Idle workers are woken one at a time: a journaled change costs a worker or two a look at the queue,
not every worker of the pool, and a burst of changes still reaches every worker at once.

With one wake-up event shared by all workers, each journaled batch woke all idle workers (20 by
default), and all but one found nothing to do: under a flood of notifications that cost the engine's
event loop about 14 us a notification (``bench/ingest.py``, bench/README.md).
"""

from __future__ import annotations

import asyncio
import statistics

from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.store import SQLiteStore
from tests.support.eventually import eventually
from tests.support.journal import journal


class CountingDispatcher(Dispatcher):
    """Counts the workers' looks at the queue (each wake-up of a worker is one)."""

    looks = 0

    def _take(self) -> tuple[WorkUnit | None, float | None]:
        self.looks += 1
        return super()._take()


async def test_a_change_wakes_one_idle_worker_not_the_whole_pool(store: SQLiteStore) -> None:
    handled: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        handled.append(unit.object_id)

    dispatcher = CountingDispatcher(store, handler, workers=20)
    await dispatcher.start()
    try:
        await eventually(lambda: len(dispatcher._sleepers) == 20, "every worker idle", timeout=5)
        looks = []
        for n in range(9):
            before = dispatcher.looks
            dispatcher.submit(await journal(store, f"user-{n}"))
            await eventually(lambda n=n: len(handled) == n + 1, "the change handled", timeout=5)
            assert await dispatcher.wait_idle(5)
            looks.append(dispatcher.looks - before)
        # One look takes the unit, one more after it finds nothing left. A worker's idle timer (once a
        # second) may add a look or twenty to one change now and then: hence the median.
        assert statistics.median(looks) <= 3, looks
        assert handled == [f"user-{n}" for n in range(9)]
    finally:
        await dispatcher.stop()


async def test_a_burst_of_changes_reaches_every_worker_at_once(store: SQLiteStore) -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        await release.wait()
        handled.append(unit.object_id)

    dispatcher = Dispatcher(store, handler, workers=20)
    await dispatcher.start()
    try:
        await eventually(lambda: len(dispatcher._sleepers) == 20, "every worker idle", timeout=5)
        users = [f"user-{n:02}" for n in range(30)]
        dispatcher.submit(await journal(store, *users))
        # One worker is woken; each one that takes a unit wakes the next while units are ready.
        await eventually(lambda: dispatcher.running == 20, "all 20 workers busy at once", timeout=5)
        release.set()
        await eventually(lambda: len(handled) == 30, "all 30 changes handled", timeout=5)
        assert sorted(handled) == users
        assert await dispatcher.wait_idle(5)
    finally:
        await dispatcher.stop()
