"""Two replicas' dispatchers and coordinators on one PostgreSQL database, in one process: an object is
never handled by both at once, the leader's kinds of work run on the leader only, and the leader's
components follow the lease. (The same with two real processes and a SIGKILL: tests/proofs/test_failover.py.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from reactor.coordination import Coordinator
from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.store import PostgresStore
from reactor.store.base import ClaimKey, JournalEntry, JournalItem
from tests.support.eventually import eventually

LEASE = 1.2


@dataclass
class Recorder:
    """A handler that takes a while and notes who ran what, and how many ran each object at once."""

    name: str
    shared: dict[str, int]
    overlaps: list[str]
    ran: Counter[str] = field(default_factory=Counter)

    async def __call__(self, unit: WorkUnit) -> None:
        for oid in unit.object_ids:
            self.shared[oid] = self.shared.get(oid, 0) + 1
            if self.shared[oid] > 1:
                self.overlaps.append(oid)
        try:
            await asyncio.sleep(0.02)  # the unit's own work (a SCIM round trip), not a wait for work
            for e in unit.entries:
                self.ran[f"{e.kind}:{e.object_id}"] += 1
        finally:
            for oid in unit.object_ids:
                self.shared[oid] -= 1


@dataclass
class Toggle:
    """A leader component that says whether it runs."""

    running: bool = False
    starts: int = 0

    async def start(self) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False


@dataclass
class Replica:
    store: PostgresStore
    recorder: Recorder
    component: Toggle
    coordinator: Coordinator
    dispatcher: Dispatcher

    async def journal(self, items: list[JournalItem]) -> None:
        """What the intake does: journal under this replica, then queue here."""
        seqs = await self.store.append(items)
        self.dispatcher.submit([
            JournalEntry(kind=i.kind, object_id=i.object_id, received_at=i.received_at, payload=i.payload, seq=s)
            for s, i in zip(seqs, items, strict=True)
        ])


class CountingStore(PostgresStore):
    """A replica's store that counts its claim statements."""

    claims_made = 0

    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]:
        self.claims_made += 1
        return await super().claim(keys, ttl)


@dataclass
class Group:
    """Replicas on one database, made and started one by one, stopped together."""

    url: str
    shared: dict[str, int] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    out: list[Replica] = field(default_factory=list)

    async def add(self, name: str) -> Replica:
        store = CountingStore(self.url)
        await store.open()
        recorder = Recorder(name, self.shared, self.overlaps)
        component = Toggle()
        coordinator = Coordinator(store, LEASE, submit=lambda entries: replica.dispatcher.submit(entries),
                                  leader_components=[component])
        replica = Replica(store, recorder, component, coordinator,
                          Dispatcher(store, recorder, workers=4, gate=coordinator, done_flush_seconds=0.01))
        self.out.append(replica)
        await replica.dispatcher.start()
        await replica.coordinator.start()
        return replica

    async def remove(self, replica: Replica) -> None:
        """A clean stop, as ``reactor serve`` does it."""
        self.out.remove(replica)
        await replica.coordinator.stop()
        await replica.dispatcher.stop()
        await replica.coordinator.leave()
        await replica.store.close()

    async def close(self) -> None:
        for r in list(self.out):
            await self.remove(r)
        assert self.overlaps == [], f"objects handled by both replicas at once: {self.overlaps}"


@pytest.fixture
async def group(postgres_url: str) -> AsyncIterator[Group]:
    g = Group(postgres_url)
    try:
        yield g
    finally:
        await g.close()


@pytest.fixture
async def replicas(group: Group) -> list[Replica]:
    return [await group.add("a"), await group.add("b")]


def user(uid: str) -> JournalItem:
    return JournalItem("user", uid, time.time(), {"resource": f"Users/{uid}"}, "sub-users", "updated")


async def test_an_object_changed_on_both_replicas_runs_on_one_at_a_time_and_every_change_runs(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    ids = [f"{i:08d}-0000-4000-8000-00000000000{i % 3}" for i in range(12)]
    for _ in range(5):
        await asyncio.gather(a.journal([user(u) for u in ids]), b.journal([user(u) for u in ids]))

    async def drained() -> bool:
        return (await a.store.backlog())[0] == 0

    await eventually(drained, "both journals drained", timeout=30)
    ran = a.recorder.ran + b.recorder.ran
    assert set(ran) == {f"user:{u}" for u in ids}
    assert sum(ran.values()) == 12 * 10, "each journal entry ran exactly once"
    assert a.recorder.ran and b.recorder.ran, "each replica ran its own"


async def test_the_leaders_work_runs_on_the_leader_and_moves_when_it_stops(replicas: list[Replica]) -> None:
    a, b = replicas
    leader, follower = (a, b) if a.coordinator.leading else (b, a)
    assert leader.coordinator.leading and not follower.coordinator.leading
    assert leader.component.running and not follower.component.running
    # A lifecycle notification that reached the follower is handed to the leader and runs there.
    await follower.journal([JournalItem("lifecycle", "sub-users", time.time(), {"lifecycleEvent": "missed"})])
    await eventually(lambda: leader.recorder.ran["lifecycle:sub-users"] == 1, "the leader ran it", timeout=10)
    assert follower.recorder.ran["lifecycle:sub-users"] == 0
    # The leader stops cleanly: the other takes the lease at its next heartbeat, and the work with it.
    await leader.coordinator.stop()
    await leader.dispatcher.stop()
    await leader.coordinator.leave()
    assert not leader.component.running
    await eventually(lambda: follower.coordinator.leading and follower.component.running, "the other leads",
                     timeout=LEASE * 2)
    await follower.journal([JournalItem("reconcile", "all", time.time(), {"cause": "periodic reconcile"})])
    await eventually(lambda: follower.recorder.ran["reconcile:all"] == 1, "the new leader reconciles", timeout=10)


async def test_a_replica_alone_claims_nothing_per_unit_and_shares_when_another_starts(group: Group) -> None:
    ids = [f"{i:08d}-0000-4000-8000-00000000000{i % 3}" for i in range(12)]
    a = await group.add("a")
    await eventually(lambda: a.coordinator.alone, "a alone holds every object", timeout=LEASE * 2)
    await a.journal([user(u) for u in ids] * 3)

    async def drained() -> bool:
        return (await a.store.backlog())[0] == 0

    await eventually(drained, "a's journal drained", timeout=30)
    assert sum(a.recorder.ran.values()) == 36
    assert a.store.claims_made == 0, "alone, no unit claimed its object"

    async def says_alone() -> bool:
        return next(r.info for r in await a.store.replicas() if r.id == a.store.replica_id)["claims"] == "all (alone)"

    await eventually(says_alone, "the status page says so (from the next heartbeat)", timeout=LEASE * 2)

    # b starts while a keeps journaling the same objects: each runs on one replica at a time (the
    # group checks it on close), and every entry runs once.
    b = await group.add("b")
    for _ in range(5):
        await asyncio.gather(a.journal([user(u) for u in ids]), b.journal([user(u) for u in ids]))
    await eventually(lambda: not a.coordinator.alone, "a shares once it sees b", timeout=LEASE * 2)
    await eventually(drained, "both journals drained", timeout=30)
    assert sum(a.recorder.ran.values()) + sum(b.recorder.ran.values()) == 36 + 12 * 10
    assert b.recorder.ran, "b ran its own once a gave up the hold"
    assert not b.coordinator.alone

    # b stops: a is alone again and takes the hold back.
    await group.remove(b)
    await eventually(lambda: a.coordinator.alone, "a alone again", timeout=LEASE * 2)
