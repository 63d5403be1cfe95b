"""Several ``reactor serve`` replicas on one store: liveness, the leader, claims, and what is whose.

Every replica serves ``/notifications`` and ``/lifecycle`` and journals what it accepts under its own
id (the store's ``replica_id``); its dispatcher handles those entries. The :class:`Coordinator`
keeps the replicas apart and takes over what a dead one leaves:

- **heartbeat** every ``lease_seconds / 4``: the replica stays alive for ``0.75 * lease_seconds``
  and its claims with it. A replica whose heartbeat expired is dead: any other adopts its journal
  entries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) at its next tick, so a killed replica's work
  moves on within ``lease_seconds``; a replica that stops cleanly frees its entries at once.
- **claims**: before a unit runs, its object (``(kind, id)``; ``(kind, "*")`` for a kind handled
  as one batch, the groups-delta round) is claimed in the store; a unit whose object another replica
  holds waits and tries again, so an object is never handled by two replicas at once and its
  changes run one after another.
- **alone**: a replica that finds at its heartbeat that no other is alive holds every object at
  once (``claim_all``) and runs its units without a claim each: claims cost PostgreSQL a row written
  and removed per object (two thirds of its work under a burst of notifications, bench/README.md).
  When another replica appears, the next heartbeat sees it: new units claim their objects again, and
  the hold is given up once the units that ran under it have ended. Until then the newcomer's claims
  take nothing and its units wait, so the rule above still holds. Units start under the hold only
  while this replica's own clock says its last heartbeat has not expired.
- **leader**: one replica holds the leader lease (same timing as the heartbeat) and runs the leader's
  components (subscription renewal, the periodic reconcile, audit pruning) and the leader's kinds
  of work (lifecycle notifications, reconciles): a follower that receives those hands them off and
  the leader adopts them. Every lease taken anew has a higher epoch; the subscription writes carry
  the fence ``(replica, epoch)`` and the store refuses them once the lease has moved on, so a paused
  old leader cannot overwrite what the new one did. A leader that cannot renew the lease stops
  leading when its own clock says the lease has run out, before another replica can take it.

On a store that is not ``shared`` (SQLite: one process per file) there is one replica: it leads
from the start, takes over every journal entry at start, and claims nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from reactor import log
from reactor.claims import ClaimBook
from reactor.domain.work import WorkUnit
from reactor.store.base import ClaimKey, Coordination, Fence, Journal, JournalEntry, Leadership, ReplicaInfo
from reactor.tasks import cancelled

Verdict = Literal["run", "busy", "elsewhere"]
"""What a replica may do with a unit now: run it; wait (another replica holds its object); or drop it
here (it was handed to the leader)."""

LEADER_KINDS: frozenset[str] = frozenset({"lifecycle", "reconcile"})
"""Work that only the leader does: it touches the subscriptions and every object at once."""

TTL_SHARE = 0.75
"""A heartbeat or a lease lasts this share of ``lease_seconds``; the next one comes after a quarter."""


class CoordinationStore(Coordination, Journal, Protocol):
    """What the coordinator needs of the store."""


class Component(Protocol):
    """A background part of the service (subscriptions, reconcile loop, audit pruning), started and
    stopped with the service or, for the leader's parts, with the leadership."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class ReplicasView:
    """Who is alive and who leads, as ``/readyz`` and the status page show it."""

    replica: str
    leading: bool
    leader: Leadership | None
    alive: tuple[ReplicaInfo, ...]
    shared: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "leading": self.leading,
            "leader": self.leader.holder if self.leader else None,
            "epoch": self.leader.epoch if self.leader else None,
            "alive": len(self.alive),
            "shared": self.shared,
            "replicas": [
                {"id": r.id, "started_at": r.started_at, "expires_at": r.expires_at, **r.info} for r in self.alive
            ],
        }


class Coordinator:
    """This replica's part in the group (see the module doc). ``submit`` queues adopted entries in the
    dispatcher; ``leader_components`` run only while this replica leads; ``while_following`` run at
    every tick while another leads (to refresh what the status page shows)."""

    def __init__(
        self,
        store: CoordinationStore,
        lease_seconds: float,
        *,
        submit: Callable[[Sequence[JournalEntry]], None],
        leader_components: Sequence[Component] = (),
        while_following: Sequence[Callable[[], Awaitable[None]]] = (),
        leader_kinds: Collection[str] = LEADER_KINDS,
        all_kinds: Collection[str] = ("user", "group", "lifecycle", "reconcile"),
        batch_kinds: Collection[str] = ("group",),
        busy_delay: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.ttl = lease_seconds * TTL_SHARE
        self.tick_seconds = lease_seconds / 4
        self.submit = submit
        self.leader_components = tuple(leader_components)
        self.while_following = tuple(while_following)
        self.leader_kinds = frozenset(leader_kinds)
        self.follower_kinds = tuple(k for k in all_kinds if k not in self.leader_kinds)
        self.batch_kinds = frozenset(batch_kinds)
        self.busy_delay = busy_delay
        self.clock = clock
        self.shared = store.shared
        self.replica_id = store.replica_id
        self.fence: Fence | None = None
        """The current term while this replica leads (``None`` otherwise, and on a single node)."""
        self._leading = False
        self._lead_until = 0.0
        self.claims = ClaimBook(store, self.ttl)
        self._task: asyncio.Task[None] | None = None
        self._change: asyncio.Lock = asyncio.Lock()
        self._components_running = False
        self.info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
        self._alone = False
        """Units start without claims (this replica holds every object; see the module doc)."""
        self._all_held = False
        """The store's hold on every object is this replica's (possibly while units still end under it)."""
        self._alone_until = 0.0
        self._under_hold: set[int] = set()
        """Units (their ``id``) running without claims, under the hold."""
        self._releasing_all: asyncio.Task[None] | None = None

    # the group -----------------------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        """Whether this replica leads now (by its own clock: it stops before the lease can move on)."""
        if not self.shared:
            return True
        return self._leading and self.clock() < self._lead_until

    async def recover(self) -> list[JournalEntry]:
        """What this replica takes over at start: on a single node every journal entry; on a shared
        store the entries of replicas no longer alive (the kinds this replica may do)."""
        await self._beat()
        if self.shared:
            self.claims.start()
        if not self.shared:
            entries: list[JournalEntry] = []
            while batch := await self.store.adopt(everything=True, limit=10_000):
                entries += batch
                if len(batch) < 10_000:
                    break
            return entries
        await self._lead()
        return await self._adopt_all()

    async def start(self) -> None:
        """Join (after :meth:`recover`): the heartbeat loop, and the leader's components if leading."""
        await self._apply_leadership()
        self._task = asyncio.create_task(self._run(), name="reactor-coordination")

    async def stop(self) -> None:
        """Stop the leader's components; the replica stays registered until :meth:`leave`."""
        await cancelled(self._task)
        self._task = None
        async with self._change:
            await self._stop_components()
        await self.claims.stop()
        await cancelled(self._releasing_all)  # leave() gives up the hold in any case

    async def leave(self) -> None:
        """After the dispatcher stopped: free this replica's claims, lease and journal entries now."""
        try:
            await self.store.leave()
        except Exception as exc:
            log.event("replica_leave_failed", level="warning", replica=self.replica_id, error=repr(exc),
                      effect="the others take over once this replica's heartbeat expires")
            return
        self._leading = False
        self.fence = None
        log.event("replica_left", replica=self.replica_id)

    async def view(self) -> ReplicasView:
        alive = tuple(await self.store.replicas())
        leader = await self.store.leadership()
        return ReplicasView(self.replica_id, self.leading, leader, alive, self.shared)

    # the dispatcher's gate -------------------------------------------------------------------------
    def _keys(self, unit: WorkUnit) -> list[ClaimKey]:
        if unit.kind in self.batch_kinds:
            return [(unit.kind, "*")]
        keys = [(unit.kind, oid) for oid in unit.object_ids]
        if unit.kind == "reconcile":
            # A reconcile reads and stores the groups delta too: on another replica a groups round
            # at the same time would apply older member changes after newer ones (in one process
            # the engine's delta lock keeps them apart; across replicas this claim does).
            keys.extend((kind, "*") for kind in sorted(self.batch_kinds))
        return keys

    async def enter(self, unit: WorkUnit) -> Verdict:
        """May this replica run ``unit`` now? Claims its object on a shared store."""
        if not self.shared:
            return "run"
        if unit.kind in self.leader_kinds and not self.leading:
            try:
                await self.store.hand_off([e.seq for e in unit.entries])
            except Exception as exc:
                log.event("hand_off_failed", level="warning", kind=unit.kind, error=repr(exc))
                return "busy"
            log.event("handed_to_leader", kind=unit.kind, object_ids=list(unit.object_ids), entries=len(unit.entries))
            return "elsewhere"
        if self.alone:
            self._under_hold.add(id(unit))
            return "run"
        return "run" if await self.claims.acquire(self._keys(unit)) else "busy"

    async def leave_unit(self, unit: WorkUnit) -> None:
        """After ``unit`` ran (before its objects may run again here): release its claims (batched)."""
        if not self.shared:
            return
        self._under_hold.discard(id(unit))
        self.claims.release(self._keys(unit))  # those it holds: claimed before this replica was alone
        if self._all_held and not self._alone and not self._under_hold and self._releasing_all is None:
            self._releasing_all = asyncio.create_task(self._release_all(), name="reactor-claims-share")

    @property
    def alone(self) -> bool:
        """Whether units start now without a claim each (this replica holds every object)."""
        return self._alone and self.clock() < self._alone_until

    def note(self, entries: Sequence[JournalEntry]) -> None:
        """Entries were just queued here: claim their objects ahead, in one statement with the others."""
        if self.shared and not self.alone:
            self.claims.note((e.kind, "*") if e.kind in self.batch_kinds else (e.kind, e.object_id)
                             for e in entries if e.kind not in self.leader_kinds or self.leading)

    def busy_wait(self) -> float:
        """How long a unit whose object another replica holds waits before trying again."""
        return self.busy_delay * (0.5 + random.random())

    # the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            wait = self.tick_seconds
            if self._leading and self.shared:
                wait = max(0.01, min(wait, self._lead_until - self.clock()))  # stop leading on time
            await asyncio.sleep(wait)  # the heartbeat period, not a wait for work
            try:
                await self.tick()
            except Exception as exc:
                log.event("coordination_tick_failed", level="warning", replica=self.replica_id, error=repr(exc))
                await self._apply_leadership()  # a leader that cannot renew stops when its lease runs out

    async def tick(self) -> None:
        """One heartbeat: stay alive, take or keep the lease, adopt what dead replicas left."""
        await self._beat()
        if not self.shared:
            return
        await self._lead()
        await self._apply_leadership()
        await self._alone_or_not()
        entries = await self._adopt_all()
        if entries:
            self.submit(entries)
        if not self.leading:
            for refresh in self.while_following:
                try:
                    await refresh()
                except Exception as exc:
                    log.event("follower_refresh_failed", level="warning", error=repr(exc))

    async def _beat(self) -> None:
        asked = self.clock()
        self.info["claims"] = "all (alone)" if self._alone else "each object"
        if not await self.store.heartbeat(self.info, self.ttl):
            log.event("replica_lapsed", level="warning", replica=self.replica_id,
                      reason="the previous heartbeat had expired: other replicas may have taken over its work")
            self.claims.held.clear()  # they may be another's now: claim again before the next unit
            self._alone = False  # the same for the hold on every object: taken again only if still alone
            return
        # The heartbeat extended the hold with the claims; counted from before the request, as the lease.
        self._alone_until = asked + self.ttl

    async def _alone_or_not(self) -> None:
        """Hold every object while no other replica is alive; share (claim each) as soon as one is."""
        others = [r for r in await self.store.replicas() if r.id != self.replica_id]
        if others:
            if self._alone:
                self._alone = False
                log.event("claims_shared", replica=self.replica_id, replicas=len(others) + 1,
                          reason="another replica is alive: units claim their objects again")
            if self._all_held and not self._under_hold:
                await self._release_all()
            return
        if self._alone or self._releasing_all is not None:
            return  # (a release still in flight would undo a hold taken now)
        asked = self.clock()
        if await self.store.claim_all(self.ttl):
            self._all_held = True
            self._alone = True
            self._alone_until = asked + self.ttl
            log.event("claims_alone", replica=self.replica_id, reason="no other replica is alive: no claim per unit")

    async def _release_all(self) -> None:
        try:
            await self.store.release_all()
            if not self._alone:
                self._all_held = False
        except Exception as exc:  # tried again at the next heartbeat
            log.event("claims_share_failed", level="warning", replica=self.replica_id, error=repr(exc))
        finally:
            self._releasing_all = None

    async def _lead(self) -> None:
        asked = self.clock()
        fence = await self.store.lead(self.ttl)
        if fence is None:
            if self._leading:
                log.event("leadership_lost", level="warning", replica=self.replica_id)
            self._leading = False
            self.fence = None
            return
        if self.fence is None or fence.epoch != self.fence.epoch:
            log.event("leadership_taken", replica=self.replica_id, epoch=fence.epoch)
        self.fence = fence
        self._leading = True
        # Counted from before the request: the store's lease cannot end before this.
        self._lead_until = asked + self.ttl

    async def _adopt_all(self) -> list[JournalEntry]:
        kinds = None if self.leading else self.follower_kinds
        entries: list[JournalEntry] = []
        while True:
            batch = await self.store.adopt(kinds=kinds, limit=1000)
            entries += batch
            if len(batch) < 1000:
                break
        if entries:
            log.event("journal_adopted", replica=self.replica_id, entries=len(entries))
        return entries

    async def _apply_leadership(self) -> None:
        """Start or stop the leader's components to match :attr:`leading`."""
        async with self._change:
            if self.leading and not self._components_running:
                self._components_running = True
                for c in self.leader_components:
                    try:
                        await c.start()
                    except Exception as exc:
                        log.event("leader_component_failed", level="error", component=type(c).__name__,
                                  error=repr(exc))
            elif not self.leading and self._components_running:
                await self._stop_components()

    async def _stop_components(self) -> None:
        if not self._components_running:
            return
        self._components_running = False
        for c in reversed(self.leader_components):
            try:
                await c.stop()
            except Exception as exc:
                log.event("component_stop_failed", level="error", component=type(c).__name__, error=repr(exc))
