"""Done journal entries leave the journal in ranges: an entry above one still pending waits until
everything below it is done, then they go together; an object backing off holds them back only for
``DONE_HOLD_SECONDS``; a clean stop deletes every done entry. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from reactor import dispatcher as dispatcher_module
from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.errors import TransientError
from reactor.store import Store
from reactor.store.base import JournalEntry
from tests.support.eventually import eventually
from tests.support.journal import journal as journal_updates
from tests.support.stores import StoreFactory

ANNA = "0b6c7a52-1f0e-4d5e-9a43-3c2f1e8d9a01"  # notified again and again
BO = "5d1e2f3a-4b5c-4d6e-8f70-812a3b4c5d02"  # slow (a unit waiting for AskCody)


class Deletes:
    """The store, with the numbers of each ``mark_done`` call noted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[list[int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def mark_done(self, seqs: Sequence[int]) -> None:
        self.calls.append(list(seqs))
        await self.store.mark_done(seqs)


async def journal(store: Store, *users: str) -> list[JournalEntry]:
    return await journal_updates(store, *users, subscription_id="sub-users", payload=lambda u: {"resource": f"Users/{u}"})


async def count(store: Store) -> int:
    return (await store.backlog())[0]


async def test_done_entries_above_a_pending_one_wait_for_it_then_leave_in_one_range(make_store: StoreFactory) -> None:
    store = await make_store()
    deletes = Deletes(store)
    bo_may_finish = asyncio.Event()
    ran: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == BO:
            await bo_may_finish.wait()
        ran.append(unit.object_id)

    d = Dispatcher(deletes, handler, workers=2, done_flush_seconds=0.01)  # type: ignore[arg-type]
    await d.start()
    try:
        d.submit(await journal(store, ANNA, BO))  # 1: anna, 2: bo (stays running)
        await eventually(lambda: ran == [ANNA], "anna's first unit ran", timeout=5)
        for i in range(5):  # anna is notified again while bo's unit runs
            d.submit(await journal(store, ANNA))
            await eventually(lambda i=i: len(ran) == i + 2, "anna's unit ran", timeout=5)
        await eventually(lambda: d.done_waiting == 5, "anna's later entries are done", timeout=5)
        assert await count(store) == 6, "anna's first entry is deleted; those above bo's wait"
        bo_may_finish.set()
        await eventually(lambda: d.done_waiting == 0, "bo is done", timeout=5)
        assert await count(store) == 0
        assert len(deletes.calls[-1]) == 6 and deletes.calls[-1] == list(range(deletes.calls[-1][0], deletes.calls[-1][0] + 6)), (
            f"bo's entry and the five above it went together: {deletes.calls}"
        )
    finally:
        bo_may_finish.set()
        await d.stop()


async def test_an_object_backing_off_holds_back_done_entries_only_for_a_while(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "DONE_HOLD_SECONDS", 0.3)
    store = await make_store()

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == BO:
            raise TransientError("AskCody is unavailable", status=503)

    d = Dispatcher(store, handler, workers=2, done_flush_seconds=0.01, retry_base_seconds=0.05, retry_max_seconds=0.1)
    await d.start()
    try:
        d.submit(await journal(store, BO, ANNA, ANNA, ANNA))

        async def only_bo_left() -> bool:
            return await count(store) == 1

        await eventually(only_bo_left, "anna's done entries deleted though bo keeps failing", timeout=10)
    finally:
        await d.stop()


async def test_a_clean_stop_deletes_every_done_entry(make_store: StoreFactory) -> None:
    store = await make_store()
    bo_may_finish = asyncio.Event()

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == BO:
            await bo_may_finish.wait()

    d = Dispatcher(store, handler, workers=2, done_flush_seconds=0.01)
    await d.start()
    d.submit(await journal(store, BO, ANNA, ANNA))
    await eventually(lambda: d.done_waiting == 2, "anna's entries are done and wait", timeout=5)
    asyncio.get_running_loop().call_later(0.05, bo_may_finish.set)
    await d.stop()
    assert await count(store) == 0
    assert (await store.pending()) == []
