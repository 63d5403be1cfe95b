"""Several replicas on one store (the Coordination role), on every store: SQLite and PostgreSQL. Two
store objects on one database stand for two ``reactor serve`` processes (each has its replica id)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from reactor.errors import LeadershipLost
from reactor.store import SQLiteStore, Store, SubscriptionRecord
from reactor.store.base import JournalItem
from tests.support.eventually import eventually
from tests.support.stores import StoreFactory

SHORT = 0.3  # seconds: a lease or heartbeat that the test lets run out
LONG = 60.0


def item(user: str, kind: str = "user") -> JournalItem:
    return JournalItem(kind, user, time.time(), {"resource": f"Users/{user}"}, "sub-1", "updated")  # type: ignore[arg-type]


def record(state: str) -> SubscriptionRecord:
    now = time.time()
    return SubscriptionRecord("sub-users", "users", "updated,deleted", "https://reactor.contoso.com/notifications",
                              "https://reactor.contoso.com/lifecycle", state, now + 3600, now)


async def two(make_store: StoreFactory) -> tuple[Store, Store]:
    a, b = await make_store(), await make_store()
    assert a.replica_id != b.replica_id
    return a, b


async def test_replicas_are_alive_while_they_beat_and_gone_when_they_leave(make_store: StoreFactory) -> None:
    a, b = await two(make_store)
    assert await a.heartbeat({"host": "aks-node-1"}, LONG) is True
    assert await b.heartbeat({"host": "aks-node-2"}, SHORT) is True
    assert [r.id for r in await a.replicas()] == [a.replica_id, b.replica_id]
    assert (await a.replicas())[0].info == {"host": "aks-node-1"}

    async def only_a() -> bool:
        return [r.id for r in await a.replicas()] == [a.replica_id]

    await eventually(only_a, "b's heartbeat expired", timeout=5)
    assert await b.heartbeat({}, LONG) is False, "b is told that it had lapsed"
    await b.leave()
    assert [r.id for r in await a.replicas()] == [a.replica_id]


async def test_one_leader_at_a_time_and_a_fenced_write_of_the_old_leader_is_refused(make_store: StoreFactory) -> None:
    a, b = await two(make_store)
    fence_a = await a.lead(SHORT)
    assert fence_a is not None and fence_a.holder == a.replica_id
    assert await b.lead(LONG) is None
    assert (await a.lead(SHORT)) == fence_a, "renewing keeps the epoch"
    await a.save_subscription(record("from a"), fence=fence_a)

    async def b_leads() -> bool:
        return await b.lead(LONG) is not None

    await eventually(b_leads, "b takes the lease once a's expired", timeout=5)
    fence_b = await b.lead(LONG)
    assert fence_b is not None and fence_b.epoch > fence_a.epoch
    leadership = await a.leadership()
    assert leadership is not None and (leadership.holder, leadership.epoch) == (b.replica_id, fence_b.epoch)

    with pytest.raises(LeadershipLost, match="no longer leads"):
        await a.save_subscription(record("late write of a paused leader"), fence=fence_a)
    with pytest.raises(LeadershipLost):
        await a.delete_subscription("sub-users", fence=fence_a)
    assert [r.client_state for r in await b.subscriptions()] == ["from a"], "nothing written"
    assert await a.lead(LONG) is None
    await b.save_subscription(record("from b"), fence=fence_b)
    assert [r.client_state for r in await a.subscriptions()] == ["from b"]

    await b.leave()
    fence_a2 = await a.lead(LONG)
    assert fence_a2 is not None and fence_a2.epoch > fence_b.epoch, "after a clean leave the lease is free at once"


async def test_an_object_is_claimed_by_one_replica_and_taken_over_when_its_claim_expires(make_store: StoreFactory) -> None:
    a, b = await two(make_store)
    anna, bo = ("user", "anna-id"), ("user", "bo-id")
    assert await a.claim([anna, anna], SHORT) == [anna]
    assert await b.claim([anna, bo], LONG) == [bo], "anna is a's"
    assert await a.claim([anna], SHORT) == [anna], "a claim is re-entrant for its holder"
    # A heartbeat extends every claim of its replica.
    await a.heartbeat({}, LONG)
    await asyncio.sleep(SHORT * 2)  # let the claim's own (short) time pass: the heartbeat must have extended it
    assert await b.claim([anna], LONG) == []
    await a.release([anna])
    assert await b.claim([anna], LONG) == [anna]
    await b.release([anna, bo])
    assert await a.claim([anna], SHORT) == [anna]

    async def b_takes_anna() -> bool:
        return await b.claim([anna], LONG) == [anna]

    await eventually(b_takes_anna, "a's claim expired and b took it", timeout=5)
    await b.leave()
    assert await a.claim([anna, bo], LONG) == [anna, bo], "a leave frees every claim at once"


async def test_a_replica_alone_holds_every_object_until_it_gives_them_up_leaves_or_lapses(
    make_store: StoreFactory,
) -> None:
    a, b = await two(make_store)
    anna, bo, chloe = ("user", "anna-id"), ("user", "bo-id"), ("group", "*")
    assert await a.claim_all(LONG) is True
    assert await a.claim_all(LONG) is True, "taking it again keeps it"
    assert await b.claim([anna, chloe], LONG) == [], "every object is a's"
    assert await b.claim_all(LONG) is False
    assert await a.claim([anna], LONG) == [anna], "its holder may still claim single objects"
    await a.release([anna])
    await a.release_all()
    assert await b.claim([anna], LONG) == [anna]
    assert await a.claim_all(LONG) is False, "b holds a claim: a is not alone"
    assert await b.claim([bo], LONG) == [bo], "the hold a tried for is not left behind"
    await b.release([anna, bo])
    # A hold lasts as long as its heartbeats; one that lapses frees every object.
    assert await a.claim_all(SHORT) is True

    async def b_claims() -> bool:
        return await b.claim([bo], LONG) == [bo]

    await eventually(b_claims, "a's hold expired", timeout=5)
    await b.release([bo])
    assert await a.claim_all(LONG) is True
    await a.leave()
    assert await b.claim([anna, bo], LONG) == [anna, bo], "a leave gives up the hold"
    assert await a.claim_all(LONG) is False


async def test_journal_entries_move_to_another_replica_only_when_their_owner_is_gone(make_store: StoreFactory) -> None:
    a, b = await two(make_store)
    await a.heartbeat({}, SHORT)
    await b.heartbeat({}, LONG)
    seqs = await a.append([item("anna-id"), item("sub-users", "lifecycle"), item("bo-id")])
    assert await b.adopt() == [], "a is alive: its entries are a's"

    async def b_adopts_users() -> list[int]:
        return [e.seq for e in await b.adopt(kinds=("user", "group"))]

    adopted: list[int] = []

    async def taken() -> bool:
        adopted.extend(await b_adopts_users())
        return bool(adopted)

    await eventually(taken, "a's heartbeat expired and b adopted its user entries", timeout=5)
    assert adopted == [seqs[0], seqs[2]], "in journal order, the leader's kind left alone"
    leftover = await b.adopt()
    assert [(e.seq, e.kind) for e in leftover] == [(seqs[1], "lifecycle")]
    assert await a.adopt() == [], "b is alive: they are b's now"
    # A follower hands the leader's work off; whoever adopts that kind next takes it.
    await b.hand_off([seqs[1]])
    await a.heartbeat({}, LONG)
    assert [e.seq for e in await a.adopt(kinds=("lifecycle",))] == [seqs[1]]
    # A replica that leaves frees its entries at once; the payload travels intact.
    await b.leave()
    again = await a.adopt()
    assert [e.seq for e in again] == [seqs[0], seqs[2]]
    assert again[0].payload == {"resource": "Users/anna-id"} and again[0].subscription_id == "sub-1"


async def test_two_replicas_adopting_at_once_never_take_the_same_entry(make_store: StoreFactory) -> None:
    writer = await make_store()
    seqs = await writer.append([item(f"user-{i:04d}") for i in range(400)])
    await writer.leave()  # the writer is gone: its entries are free
    a, b = await two(make_store)
    await a.heartbeat({}, LONG)
    await b.heartbeat({}, LONG)
    got_a, got_b = await asyncio.gather(a.adopt(limit=150), b.adopt(limit=150))
    more_a, more_b = await asyncio.gather(a.adopt(), b.adopt())
    taken_a = {e.seq for e in got_a + more_a}
    taken_b = {e.seq for e in got_b + more_b}
    assert not taken_a & taken_b
    assert taken_a | taken_b == set(seqs)


async def test_a_file_from_before_replicas_keeps_its_pending_entries(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, object_id TEXT NOT NULL,"
        " subscription_id TEXT NOT NULL DEFAULT '', change_type TEXT NOT NULL DEFAULT '', received_at REAL NOT NULL,"
        " payload BLOB NOT NULL);"
        "INSERT INTO journal (kind, object_id, received_at, payload) VALUES ('user', 'o''brien-id', 1.0, '{}');"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        assert [e.object_id for e in await store.adopt()] == ["o'brien-id"]
        assert [e.object_id for e in await store.pending()] == ["o'brien-id"]
    finally:
        await store.close()
