"""The journal under group commit, on every store: sequence numbers, mixed batches, done ranges.

Appends that wait while the writer is busy go into its next commit together. To make a batch hold
given appends deterministically, the writer is first held: on SQLite a job occupies the writer
thread; on PostgreSQL another session locks the journal table while an append waits on the lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from reactor.config import StoreSettings
from reactor.errors import StoreError
from reactor.metrics import REGISTRY
from reactor.store import PostgresStore, SQLiteStore, Store, SubscriptionRecord, open_store
from reactor.store.base import JournalItem, ObjectMapping
from tests.support.eventually import eventually
from tests.support.stores import StoreFactory

Release = Callable[[], Awaitable[None]]


def items(prefix: str, n: int) -> list[JournalItem]:
    return [
        JournalItem("user", f"{prefix}-{i}", time.time(), {"n": i, "prefix": prefix}, "sub", "updated") for i in range(n)
    ]


async def hold_writer(store: Store) -> tuple[Release, asyncio.Future[Any]]:
    """Keep the journal writer busy until ``release()``; the second value is the job holding it."""
    if isinstance(store, SQLiteStore):
        go = threading.Event()
        started = threading.Event()

        def block(conn: sqlite3.Connection) -> None:
            started.set()
            go.wait(10)

        held = asyncio.ensure_future(store._call(block))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)

        async def release_thread() -> None:
            go.set()

        return release_thread, held
    assert isinstance(store, PostgresStore)
    locker = await asyncpg.connect(store._dsn, password=store._password.reveal())
    tx = locker.transaction()
    await tx.start()
    await locker.execute("LOCK TABLE journal IN EXCLUSIVE MODE")
    held = asyncio.ensure_future(store.append(items("held", 1)))

    async def waiting_on_the_lock() -> bool:
        return bool(await locker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'journal'::regclass"))

    await eventually(waiting_on_the_lock, "the writer waits for the journal lock", timeout=10)

    async def release_lock() -> None:
        await tx.rollback()
        await locker.close()

    return release_lock, held


def failing_job(store: Store) -> Awaitable[Any]:
    """An operation that fails in the database (a table that does not exist)."""
    if isinstance(store, SQLiteStore):
        return store._call(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))
    assert isinstance(store, PostgresStore)
    return store._run(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))


def commits() -> float:
    return REGISTRY.get_sample_value("reactor_journal_write_seconds_count") or 0.0


async def test_appends_get_their_own_consecutive_numbers_and_payloads_back(any_store: Store) -> None:
    store = any_store
    batches = [items(f"b{k}", k + 1) for k in range(20)]
    before = commits()
    seqs = await asyncio.gather(*(store.append(b) for b in batches))
    assert commits() - before == 1, "twenty concurrent callers share one group commit"
    flat = [s for per_caller in seqs for s in per_caller]
    assert len(flat) == len(set(flat)) == sum(len(b) for b in batches)
    for per_caller in seqs:
        assert per_caller == list(range(per_caller[0], per_caller[0] + len(per_caller)))
    by_seq = {e.seq: e for e in await store.pending()}
    for batch, per_caller in zip(batches, seqs, strict=True):
        for item, seq in zip(batch, per_caller, strict=True):
            assert by_seq[seq].object_id == item.object_id
            assert by_seq[seq].payload == item.payload


async def test_appends_beside_other_jobs_and_a_failing_one_in_one_batch(any_store: Store) -> None:
    store = any_store
    release, held = await hold_writer(store)
    record = SubscriptionRecord("s1", "users", "updated", "https://x/n", "https://x/l", "state", time.time() + 60, time.time())
    big = items("big", 600)  # more rows than one INSERT statement takes
    small = items("small", 3)
    jobs = [
        asyncio.ensure_future(store.append(big)),
        asyncio.ensure_future(failing_job(store)),
        asyncio.ensure_future(store.save_subscription(record)),
        asyncio.ensure_future(store.append(small)),
    ]
    await asyncio.sleep(0)  # let the appends of this loop iteration reach the writer's queue
    await asyncio.sleep(0)
    await release()
    held_seqs = await held
    big_seqs, failed, saved, small_seqs = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(failed, StoreError)
    assert saved is None
    assert isinstance(big_seqs, list) and isinstance(small_seqs, list)
    assert len(set(big_seqs) | set(small_seqs)) == 603
    pending = [e for e in await store.pending() if e.seq not in (held_seqs or [])]
    assert [e.object_id for e in pending] == [i.object_id for i in big + small]
    assert [s.id for s in await store.subscriptions()] == ["s1"]


async def test_mark_done_removes_exactly_the_given_numbers(any_store: Store) -> None:
    store = any_store
    seqs = await store.append(items("x", 40))
    done = seqs[0:5] + seqs[7:8] + seqs[10:30] + seqs[39:40]
    await store.mark_done(list(reversed(done)) + done[:3])  # any order, duplicates harmless
    left = [e.seq for e in await store.pending()]
    assert left == [s for s in seqs if s not in set(done)]


async def test_mark_done_of_many_scattered_numbers(any_store: Store) -> None:
    """Coalesced units leave every other number, more of them than one delete statement carries."""
    store = any_store
    seqs = await store.append(items("x", 2_400))
    done = seqs[::2]
    await store.mark_done(done)
    assert [e.seq for e in await store.pending(limit=5_000)] == seqs[1::2]


async def test_journal_survives_reopen(make_store: StoreFactory) -> None:
    first = await make_store()
    seqs = await first.append(items("keep", 5))
    await first.close()
    second = await make_store()
    assert [e.seq for e in await second.pending()] == seqs
    assert [e.payload for e in await second.pending()] == [i.payload for i in items("keep", 5)]
    more = await second.append(items("more", 2))
    assert min(more) > max(seqs)


async def test_append_on_a_store_not_open_or_closed_is_a_store_error(store_url: str, make_store: StoreFactory) -> None:
    never_opened = open_store(StoreSettings(url=store_url))
    with pytest.raises(StoreError):
        await never_opened.append(items("x", 1))
    closed = await make_store()
    await closed.close()
    with pytest.raises(StoreError):
        await closed.append(items("x", 1))


async def test_a_caller_that_gave_up_does_not_shift_the_numbers_of_the_others(any_store: Store) -> None:
    store = any_store
    release, held = await hold_writer(store)
    first = store.append(items("gone", 3))
    second = store.append(items("kept", 2))
    assert isinstance(first, asyncio.Future)
    first.cancel()  # e.g. the webhook's client went away while its items were being journaled
    await asyncio.sleep(0)
    await release()
    await held
    kept = await second
    by_seq = {e.seq: e.object_id for e in await store.pending()}
    assert [by_seq[s] for s in kept] == ["kept-0", "kept-1"]


# SQLite only: the database is a file of ours. ----------------------------------------------------


async def test_the_database_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "reactor.db"
    db = SQLiteStore(str(path))
    await db.open()
    try:
        await db.append([JournalItem("user", "u-1", 1.0, {"id": "u-1"})])
        files = [p for p in tmp_path.iterdir() if p.name.startswith("reactor.db")]
        assert {p.name for p in files} >= {"reactor.db", "reactor.db-wal"}
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}
    finally:
        await db.close()


async def test_a_database_file_removed_between_opens_is_made_private_again(tmp_path: Path) -> None:
    for _ in range(2):
        for p in tmp_path.iterdir():
            p.unlink()
        db = SQLiteStore(str(tmp_path / "reactor.db"))
        await db.open()
        try:
            await db.append([JournalItem("user", "u-1", 1.0, {"id": "u-1"})])
        finally:
            await db.close()
        assert oct((tmp_path / "reactor.db").stat().st_mode & 0o777) == "0o600"


async def test_no_cursor_of_the_writer_reaches_the_event_loop(store: SQLiteStore) -> None:
    """A cursor finalised on the event loop's thread resets a statement the writer thread may be
    stepping (SQLite then answers "bad parameter or other API misuse"): jobs hand back plain values."""
    seen: list[Any] = []

    def job(c: sqlite3.Connection) -> sqlite3.Cursor:
        cursor = c.execute("SELECT 1")
        seen.append(cursor)
        return cursor

    assert await store._call(job) is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed in the writer thread
        seen[0].fetchone()
    await store.put_mapping(ObjectMapping("user", "u-1", "scim-1", {"attributes": {}}, time.time()))
    await store.record_audit([])
    assert (await store.get_mapping("user", "u-1")) is not None


async def test_lookups_are_answered_while_the_writer_is_held(any_store: Store) -> None:
    """The engine's lookups (a mapping, a user's groups, a meta value) do not queue behind the
    writer's commits, where the intake's appends would then wait behind them; and a read made after
    a write returned sees that write."""
    await any_store.put_mapping(ObjectMapping("user", "u-1", "scim-1", {"attributes": {"costCenter": "CC-1"}}, time.time()))
    await any_store.update_members("g-1", ["u-1"], [])
    await any_store.set_meta("k", "v")
    release, held = await hold_writer(any_store)
    try:
        mapping = await asyncio.wait_for(any_store.get_mapping("user", "u-1"), 5)
        assert mapping is not None and mapping.scim_id == "scim-1"
        assert mapping.state == {"attributes": {"costCenter": "CC-1"}}
        assert await asyncio.wait_for(any_store.groups_of("u-1"), 5) == {"g-1"}
        assert await asyncio.wait_for(any_store.get_meta("k"), 5) == "v"
        assert [m.entra_id for m in await asyncio.wait_for(any_store.mappings("user"), 5)] == ["u-1"]
        assert not held.done()
    finally:
        await release()
        await held
    await any_store.put_mapping(ObjectMapping("user", "u-1", "scim-2", {}, time.time()))
    await any_store.update_members("g-1", [], ["u-1"])
    mapping = await any_store.get_mapping("user", "u-1")
    assert mapping is not None and mapping.scim_id == "scim-2" and mapping.state == {}
    assert await any_store.groups_of("u-1") == set()
