"""Two replicas' dispatchers and coordinators on one PostgreSQL database, in one process: an object is
never handled by both at once, the leader's kinds of work run on the leader only, and the leader's
components follow the lease. (The same with two real processes and a SIGKILL: tests/proofs/test_failover.py.)"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from reactor.coordination import Coordinator
from reactor.dispatcher import Dispatcher
from reactor.domain.work import WorkUnit
from reactor.store import PostgresStore
from reactor.store.base import JournalEntry, JournalItem
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


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[list[Replica]]:
    shared: dict[str, int] = {}
    overlaps: list[str] = []
    out: list[Replica] = []
    for name in ("a", "b"):
        store = PostgresStore(postgres_url)
        await store.open()
        recorder = Recorder(name, shared, overlaps)
        component = Toggle()
        dispatcher: Dispatcher
        coordinator = Coordinator(
            store, LEASE, submit=lambda entries, n=name: next(r for r in out if r.recorder.name == n).dispatcher.submit(entries),
            leader_components=[component],
        )
        dispatcher = Dispatcher(store, recorder, workers=4, gate=coordinator, done_flush_seconds=0.01)
        out.append(Replica(store, recorder, component, coordinator, dispatcher))
    for r in out:
        await r.dispatcher.start()
        await r.coordinator.start()
    try:
        yield out
    finally:
        for r in out:
            await r.coordinator.stop()
            await r.dispatcher.stop()
            await r.coordinator.leave()
            await r.store.close()
        assert overlaps == [], f"objects handled by both replicas at once: {overlaps}"


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
