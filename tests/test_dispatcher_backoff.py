"""After failures, the first success of the same kind gives every object of that kind backing off
one early try.

An AskCody outage leaves many objects backing off (up to ``retry_max_seconds``); when AskCody
answers again, waiting out those backoffs only delays the changes. The early try is limited to one
per backoff period, so an object that fails for its own reasons does not spin while others succeed.
"""

from __future__ import annotations

import asyncio
import time

from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.errors import TransientError
from reactor.store import SQLiteStore
from reactor.store.base import JournalEntry, JournalItem, ObjectKind
from tests.support.eventually import eventually


async def journal(store: SQLiteStore, *users: str, kind: ObjectKind = "user") -> list[JournalEntry]:
    items = [JournalItem(kind, u, time.time(), {}, "sub", "updated") for u in users]
    seqs = await store.append(items)
    return [JournalEntry(i.kind, i.object_id, i.received_at, i.payload, i.subscription_id, i.change_type, s)
            for i, s in zip(items, seqs, strict=True)]


async def test_objects_backing_off_run_as_soon_as_a_unit_succeeds_again(store: SQLiteStore) -> None:
    outage = True
    handled: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        if outage and unit.kind == "user":  # users need AskCody; lifecycle units only Graph
            raise TransientError("AskCody is unavailable", status=503)
        handled.append(unit.object_id)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=30.0, retry_max_seconds=60.0)
    await dispatcher.start()
    try:
        dispatcher.submit(await journal(store, "u-a", "u-b"))
        await eventually(lambda: dispatcher.failures >= 2)  # both now back off for 30 s
        # A unit of another kind succeeds during the outage: it says nothing about AskCody, and
        # must not spend the early tries of the users.
        dispatcher.submit(await journal(store, "s-lifecycle", kind="lifecycle"))
        await eventually(lambda: "s-lifecycle" in handled)
        outage = False
        started = time.monotonic()
        dispatcher.submit(await journal(store, "u-new"))
        await eventually(lambda: {"u-a", "u-b", "u-new"} <= set(handled), timeout=5)
        assert time.monotonic() - started < 5, "the objects waited out their 30 s backoff"
        assert await dispatcher.wait_idle(5)
    finally:
        await dispatcher.stop()


async def test_an_object_that_keeps_failing_gets_one_early_try_per_backoff_period(store: SQLiteStore) -> None:
    attempts: list[float] = []

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == "u-broken":
            attempts.append(time.monotonic())
            raise TransientError("this user cannot be synced yet", status=503)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=1.0, retry_max_seconds=1.0)
    await dispatcher.start()
    try:
        dispatcher.submit(await journal(store, "u-broken"))
        await eventually(lambda: len(attempts) >= 1)
        # 3 s of steady traffic that succeeds, one new object every 20 ms
        deadline = time.monotonic() + 3.0
        n = 0
        while time.monotonic() < deadline:
            n += 1
            dispatcher.submit(await journal(store, f"u-ok-{n}"))
            await asyncio.sleep(0.02)  # paces the traffic; not a wait for work
        window = [t for t in attempts if t >= deadline - 3.0]
        # A 1 s backoff allows about 3 natural tries in 3 s, plus at most one early try each;
        # without the limit the broken object would run after every one of ~150 successes.
        assert 2 <= len(window) <= 8, f"{len(window)} attempts in 3 s"
    finally:
        await dispatcher.stop()
