"""A unit that fails for a reason of its own ends in the dead letters; an outage never does.

A handler that raises something other than a transient error (a reply that cannot be parsed, a bug)
would fail the same way forever: after ``max_attempts`` attempts the unit goes to the dead letters
with the error, its journal entries are done, and the backlog drains; a permanent error raised outside
the engine's apply too. A transient error (AskCody or Graph down) is retried for as long as it takes.
"""

from __future__ import annotations

import time

from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.errors import PermanentError, TransientError
from reactor.store import SQLiteStore
from tests.support.eventually import eventually
from tests.support.journal import journal

BROKEN = "5f0c6c1e-8a51-4c1e-9a43-2f6d8e1b7a10"
FINE = "a3d2b9e4-1c7f-4e2a-b6d5-9f8e7c6b5a41"
FORBIDDEN = "0b1e2d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e"


async def test_a_unit_raising_an_unexpected_exception_is_dead_lettered_after_the_attempt_limit(store: SQLiteStore) -> None:
    attempts: list[str] = []
    handled: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == BROKEN:
            attempts.append(unit.object_id)
            raise ValueError("invalid literal for int() with base 10: 'users'")
        handled.append(unit.object_id)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=0.01, retry_max_seconds=0.05, max_attempts=3)
    await dispatcher.start()
    try:
        dispatcher.submit(await journal(store, BROKEN))

        async def dead_lettered() -> bool:
            return bool(await store.dead_letters())

        await eventually(dead_lettered, "the failing unit in the dead letters")
        [letter] = await store.dead_letters()
        assert (letter.kind, letter.object_id) == ("user", BROKEN)
        assert letter.error == "ValueError: invalid literal for int() with base 10: 'users'"
        assert len(letter.attempts) == 3 and len(attempts) == 3
        assert await dispatcher.wait_idle(5), "the dead-lettered unit is still pending"

        async def journal_empty() -> bool:
            return not await store.pending(after_seq=0)

        await eventually(journal_empty, "the dead-lettered entry gone from the journal")
        # The dispatcher goes on with the next unit, and the broken one does not run again.
        dispatcher.submit(await journal(store, FINE))
        await eventually(lambda: FINE in handled, "the next unit handled")
        assert len(attempts) == 3
    finally:
        await dispatcher.stop()


async def test_a_permanent_error_is_dead_lettered_and_an_outage_is_retried_without_limit(store: SQLiteStore) -> None:
    outage_attempts: list[float] = []
    outage = True

    async def handler(unit: WorkUnit) -> None:
        if unit.object_id == FORBIDDEN:
            raise PermanentError("Graph refused the read (403)", status=403)
        if outage:
            outage_attempts.append(time.monotonic())
            raise TransientError("AskCody is unavailable", status=503)

    dispatcher = Dispatcher(store, handler, workers=2, retry_base_seconds=0.01, retry_max_seconds=0.02, max_attempts=2)
    await dispatcher.start()
    try:
        dispatcher.submit(await journal(store, FORBIDDEN, FINE))

        async def forbidden_dead_lettered() -> bool:
            return [(d.object_id, len(d.attempts)) for d in await store.dead_letters()] == [(FORBIDDEN, 2)]

        await eventually(forbidden_dead_lettered, "the permanent failure in the dead letters after two attempts")
        await eventually(lambda: len(outage_attempts) >= 6, "the outage retried past the attempt limit")
        assert [d.object_id for d in await store.dead_letters()] == [FORBIDDEN]
        outage = False
        assert await dispatcher.wait_idle(5), "the unit did not go through once the outage was over"
        assert [d.object_id for d in await store.dead_letters()] == [FORBIDDEN]
    finally:
        await dispatcher.stop()
