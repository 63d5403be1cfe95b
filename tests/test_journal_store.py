"""The SQLite journal under group commit: sequence numbers, mixed batches and done ranges.

The writer thread takes every job waiting in its queue as one batch. To make a batch mix jobs
deterministically, a first job holds the writer until the others are queued behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from reactor.errors import StoreError
from reactor.store import SQLiteStore, SubscriptionRecord
from reactor.store.base import JournalItem


def items(prefix: str, n: int) -> list[JournalItem]:
    return [
        JournalItem("user", f"{prefix}-{i}", time.time(), {"n": i, "prefix": prefix}, "sub", "updated") for i in range(n)
    ]


async def hold_writer(store: SQLiteStore) -> tuple[threading.Event, asyncio.Future[object]]:
    """Occupy the writer thread until the returned event is set."""
    release = threading.Event()
    started = threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    held = asyncio.ensure_future(store._call(block))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    return release, held


async def test_appends_get_their_own_consecutive_numbers_and_payloads_back(store: SQLiteStore) -> None:
    batches = [items(f"b{k}", k + 1) for k in range(20)]
    seqs = await asyncio.gather(*(store.append(b) for b in batches))
    flat = [s for per_caller in seqs for s in per_caller]
    assert len(flat) == len(set(flat)) == sum(len(b) for b in batches)
    for per_caller in seqs:
        assert per_caller == list(range(per_caller[0], per_caller[0] + len(per_caller)))
    by_seq = {e.seq: e for e in await store.pending()}
    for batch, per_caller in zip(batches, seqs, strict=True):
        for item, seq in zip(batch, per_caller, strict=True):
            assert by_seq[seq].object_id == item.object_id
            assert by_seq[seq].payload == item.payload


async def test_appends_beside_other_jobs_and_a_failing_one_in_one_batch(store: SQLiteStore) -> None:
    release, held = await hold_writer(store)

    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    record = SubscriptionRecord("s1", "users", "updated", "https://x/n", "https://x/l", "state", time.time() + 60, time.time())
    big = items("big", 600)  # more rows than one INSERT statement takes
    small = items("small", 3)
    jobs = [
        asyncio.ensure_future(store.append(big)),
        asyncio.ensure_future(store._call(fails)),
        asyncio.ensure_future(store.save_subscription(record)),
        asyncio.ensure_future(store.append(small)),
    ]
    await asyncio.sleep(0)  # let the appends of this loop iteration reach the writer's queue
    await asyncio.sleep(0)
    release.set()
    await held
    big_seqs, failed, saved, small_seqs = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(failed, StoreError)
    assert saved is None
    assert isinstance(big_seqs, list) and isinstance(small_seqs, list)
    assert len(set(big_seqs) | set(small_seqs)) == 603
    pending = await store.pending()
    assert [e.object_id for e in pending] == [i.object_id for i in big + small]
    assert [s.id for s in await store.subscriptions()] == ["s1"]


async def test_mark_done_removes_exactly_the_given_numbers(store: SQLiteStore) -> None:
    seqs = await store.append(items("x", 40))
    done = seqs[0:5] + seqs[7:8] + seqs[10:30] + seqs[39:40]
    await store.mark_done(list(reversed(done)) + done[:3])  # any order, duplicates harmless
    left = [e.seq for e in await store.pending()]
    assert left == [s for s in seqs if s not in set(done)]


async def test_journal_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    first = SQLiteStore(path)
    await first.open()
    seqs = await first.append(items("keep", 5))
    await first.close()
    second = SQLiteStore(path)
    await second.open()
    try:
        assert [e.seq for e in await second.pending()] == seqs
        more = await second.append(items("more", 2))
        assert min(more) > max(seqs)
    finally:
        await second.close()


async def test_append_on_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    closed = SQLiteStore(str(tmp_path / "c.db"))
    with pytest.raises(StoreError):
        await closed.append(items("x", 1))


async def test_a_caller_that_gave_up_does_not_shift_the_numbers_of_the_others(store: SQLiteStore) -> None:
    release, held = await hold_writer(store)
    first = store.append(items("gone", 3))
    second = store.append(items("kept", 2))
    assert isinstance(first, asyncio.Future)
    first.cancel()  # e.g. the webhook's client went away while its items were being journaled
    await asyncio.sleep(0)
    release.set()
    await held
    kept = await second
    by_seq = {e.seq: e.object_id for e in await store.pending()}
    assert [by_seq[s] for s in kept] == ["kept-0", "kept-1"]


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
