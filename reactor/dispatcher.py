"""The dispatcher: an in-process queue fed from the journal.

Pending journal entries are coalesced per object ``(kind, object_id)``: any number of notifications
for one user become one unit of work. Kinds listed in ``batch_kinds`` (groups: one groups-delta round
serves every dirty group) are taken all at once as a single unit. Guarantees:

- never two workers on the same object (or on the same batched kind) at once;
- a bounded pool of workers;
- journal entries are marked done only after the handler returned without raising;
- a unit whose handler raised a :class:`~reactor.errors.TransientError` (or a
  :class:`~reactor.errors.StoreError`) stays pending and is retried after a backoff, for as long as
  it takes (nothing is lost while AskCody is down);
- any other exception (a :class:`~reactor.errors.PermanentError` raised outside the engine's apply,
  a reply that cannot be parsed, a bug) counts as an attempt: after ``max_attempts`` of them the unit
  goes to the dead letters with the error and its entries are done, so that it cannot loop forever;
- on start, everything journaled and not done is queued again.

Done entries are deleted from the journal in batches (``done_flush_seconds``): a crash between the
handler's success and the flush runs those units again, which the handlers tolerate (they read fresh
state and are idempotent). A done entry numbered above the lowest entry still pending here waits (up
to ``DONE_HOLD_SECONDS`` and ``DONE_HOLD_MAX`` entries) until everything below it is done too, so
that the deletes are ranges of consecutive numbers: a coalesced unit's entries are scattered among
other objects' (a user notified again and again while others wait), and deleting them one by one
rewrote a page of the journal for nearly every entry, the commit that carried them was the
writer's longest, and the intake's group commits waited behind it (bench/README.md). On a clean stop
every done entry is deleted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, Protocol

from reactor import log
from reactor.backoff import Backoff
from reactor.config import SyncSettings
from reactor.domain.work import Handler, WorkUnit
from reactor.errors import StoreError, TransientError
from reactor.metrics import DEAD_LETTERED, OLDEST_PENDING_AGE, QUEUE_DEPTH, WORKERS_BUSY
from reactor.store.base import DeadLetters, Journal, JournalEntry

Key = tuple[str, str]

DONE_HOLD_SECONDS = 30.0
"""How long the lowest pending entry may stay the same (an object backing off) before the done
entries above it are deleted anyway, scattered as they are."""
DONE_HOLD_MAX = 200_000
"""How many done entries may wait so (a crash runs their objects again: one unit each, coalesced)."""

WATERMARK_OBJECTS_MAX = 10_000
"""With more objects pending than this, done entries are deleted at once (no lowest number sought)."""
STOP_GRACE_SECONDS = 10.0
"""How long a stop waits for in-flight units before cancelling them (they stay journaled)."""

RETRIED_WITHOUT_LIMIT: tuple[type[BaseException], ...] = (TransientError, StoreError)
"""Failures of the services, not of the unit: retried until they pass, never dead-lettered."""

ERROR_TEXT_LIMIT = 500
"""The longest error text kept in a dead letter (an exception may quote a whole reply)."""



class DispatcherStore(Journal, DeadLetters, Protocol):
    """What the dispatcher needs of the store: the journal, and the dead letters for units that fail for good."""


class Gate(Protocol):
    """Who else may be handling an object (several replicas on one store): see
    :class:`reactor.coordination.Coordinator`. Without a gate the dispatcher is alone on its journal."""

    shared: bool
    """Whether other replicas share the journal. When not (SQLite), every unit may run here and
    :meth:`enter`, :meth:`leave_unit` and :meth:`note` have nothing to do: the dispatcher skips them."""

    async def recover(self) -> list[JournalEntry]:
        """The journal entries this dispatcher takes over at start."""

    async def enter(self, unit: WorkUnit) -> Literal["run", "busy", "elsewhere"]:
        """``run``: go ahead; ``busy``: another replica holds an object of the unit, try again after
        :meth:`busy_wait`; ``elsewhere``: the unit's entries were handed to another replica, drop them."""

    async def leave_unit(self, unit: WorkUnit) -> None:
        """The unit ran (or failed): its objects are free for others."""

    def busy_wait(self) -> float: ...

    def note(self, entries: Sequence[JournalEntry]) -> None:
        """Entries were just queued (the gate may prepare for them: claim their objects ahead)."""


class _Pending:
    __slots__ = ("attempts", "early", "entries", "failures", "not_before")

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self.not_before = 0.0
        self.failures = 0
        self.attempts: list[dict[str, Any]] = []  # failed attempts that count towards max_attempts
        self.early = False  # had its early try in the current backoff period (see _release_backoffs)


class Dispatcher:
    """Coalesce journaled changes per object and run them on a bounded worker pool."""

    def __init__(
        self,
        store: DispatcherStore,
        handler: Handler,
        *,
        workers: int = 4,
        batch_kinds: Collection[str] = ("group",),
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        done_flush_seconds: float = 0.05,
        batch_settle_seconds: float = 0.25,
        max_attempts: int = SyncSettings.max_attempts,
        clock: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        # Asked per unit and per journaled batch only when other replicas share the journal: on a store
        # of its own the answers are fixed ("run", nothing to claim), and asking cost two awaits a unit.
        self._claims = gate if gate is not None and gate.shared else None
        self.handler = handler
        self.workers = workers
        self.batch_kinds = frozenset(batch_kinds)
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.done_flush_seconds = done_flush_seconds
        self.batch_settle_seconds = batch_settle_seconds
        self.max_attempts = max_attempts
        self.clock = clock
        self._pending: dict[Key, _Pending] = {}
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._delayed: list[tuple[float, Key]] = []
        self._batch_keys: dict[str, set[Key]] = {k: set() for k in self.batch_kinds}
        self._busy: set[Key] = set()
        self._busy_kinds: set[str] = set()
        self._known: set[int] = set()
        self._done: list[int] = []
        self._low = 0  # the lowest entry pending here at the last flush, and since when
        self._low_since = 0.0
        self._flushed_below = 0
        self._max_seq = 0
        self._unordered = False  # an entry came in below a newer one (adopted): delete without waiting
        # Idle workers, each waiting on a future of its own: a change wakes one of them, which passes
        # the wake on when it finds more to do (see _worker). One event shared by all woke every idle
        # worker at each journaled batch: with the default 20 workers, 20 task steps for one unit, about
        # 14 us of the event loop per notification under a flood (bench/README.md, stop 23).
        self._sleepers: set[asyncio.Future[None]] = set()
        self._flush_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.units_handled = 0
        self._last_failed: dict[str, bool] = {}
        self._running = 0
        self.failures = 0

    # feeding -------------------------------------------------------------------------------------
    def submit(self, entries: Sequence[JournalEntry]) -> None:
        """Queue journaled entries (already durable). Entries seen before are ignored."""
        added = False
        for e in entries:
            if e.seq in self._known:
                continue
            self._known.add(e.seq)
            if e.seq < self._max_seq:
                self._unordered = True  # an object's first entry may no longer be its lowest
            else:
                self._max_seq = e.seq
            key = (e.kind, e.object_id)
            p = self._pending.get(key)
            if p is None:
                p = self._pending[key] = _Pending()
            p.entries.append(e)
            self._make_ready(key, p)
            added = True
        if added:
            self._idle.clear()
            self._wake_one()
            if self._claims is not None:
                self._claims.note(entries)

    def _make_ready(self, key: Key, p: _Pending) -> None:
        if key[0] in self.batch_kinds:
            if key not in self._batch_keys[key[0]] and not p.not_before:
                # Let a trickle of notifications gather for a moment: one round then serves them all.
                p.not_before = self.clock() + self.batch_settle_seconds
            self._batch_keys[key[0]].add(key)
            return
        if key in self._queued or key in self._busy or p.not_before > self.clock():
            return
        self._queued.add(key)
        self._ready.append(key)

    async def recover(self) -> int:
        """Queue everything journaled and not done (on start; with a gate, what it hands over).
        Returns how many entries."""
        if self.gate is not None:
            entries = await self.gate.recover()
            self.submit(entries)
            return len(entries)
        after = 0
        total = 0
        while True:
            batch = await self.store.pending(after_seq=after)
            if not batch:
                break
            self.submit(batch)
            total += len(batch)
            after = batch[-1].seq
        return total

    # running -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        await self.recover()
        self._flusher = asyncio.create_task(self._flush_loop(), name="reactor-journal-done")
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reactor-worker-{i}"))

    async def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Let in-flight units finish for up to ``timeout`` seconds, then cancel them; nothing is
        lost either way: whatever did not finish stays journaled and runs again after the restart
        (handlers read fresh state and are idempotent). A unit waiting out a retry against an
        unreachable service is cancelled rather than waited for: the stop stays within an
        orchestrator's grace period (30 s by default in Kubernetes)."""
        self._stopping = True
        self._wake_all()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, still = await asyncio.wait(tasks, timeout=timeout)
            if self._running:
                log.event("units_cancelled", level="warning", units=self._running,
                          reason=f"still running {timeout:g} s after the stop began; they stay journaled")
            for t in still:
                t.cancel()
            for t in still:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self._flush_done(everything=True)

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and all(not t.done() for t in self._tasks)

    @property
    def running(self) -> int:
        """Units being handled right now."""
        return self._running

    @property
    def depth(self) -> int:
        return len(self._pending)

    def oldest_pending(self) -> float | None:
        oldest = [p.entries[0].received_at for p in self._pending.values() if p.entries]
        return min(oldest) if oldest else None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; ``False`` on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _wake_one(self) -> None:
        """Wake one idle worker (if any) to look for work; it wakes the next if it finds more."""
        while self._sleepers:
            woken = self._sleepers.pop()
            if not woken.done():
                woken.set_result(None)
                return

    def _wake_all(self) -> None:
        sleepers, self._sleepers = self._sleepers, set()
        for woken in sleepers:
            _resolve(woken)

    def _more_to_take(self) -> bool:
        """Whether another worker may find work now or should set its timer anew: units ready, a
        batched kind not running, or objects waiting out a delay."""
        return bool(self._ready) or bool(self._delayed) or any(
            keys and kind not in self._busy_kinds for kind, keys in self._batch_keys.items()
        )

    def _take(self) -> tuple[WorkUnit | None, float | None]:
        """The next runnable unit, or the delay until a delayed one becomes runnable."""
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now:
            due_at, key = heapq.heappop(self._delayed)
            p = self._pending.get(key)
            if p is not None:
                if due_at == p.not_before:
                    p.early = False  # its backoff ran out: a new period begins
                self._make_ready(key, p)
        for kind, keys in self._batch_keys.items():
            if kind in self._busy_kinds or not keys:
                continue
            if not any(self._pending[k].not_before <= now for k in keys):
                continue
            # One round serves every object of the kind: take all but those backing off after a failure.
            due = [k for k in keys if self._pending[k].not_before <= now or not self._pending[k].failures]
            self._busy_kinds.add(kind)
            return self._unit(kind, due), None
        while self._ready:
            key = self._ready.popleft()
            self._queued.discard(key)
            if key in self._busy or key not in self._pending:
                continue
            return self._unit(key[0], [key]), None
        soonest = self._delayed[0][0] - now if self._delayed else None
        if soonest is None:
            batch_waits = [
                self._pending[k].not_before - now
                for kind, keys in self._batch_keys.items()
                if kind not in self._busy_kinds
                for k in keys
            ]
            soonest = min(batch_waits) if batch_waits else None
        return None, soonest

    def _unit(self, kind: str, keys: list[Key]) -> WorkUnit:
        entries: list[JournalEntry] = []
        for k in keys:
            entries.extend(self._pending[k].entries)
            self._busy.add(k)
        if len(keys) > 1:
            entries.sort(key=lambda e: e.seq)
        return WorkUnit(kind=kind, object_ids=tuple(k[1] for k in keys), entries=tuple(entries))

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            unit, delay = self._take()
            if unit is None:
                if not self._busy and not self._pending:
                    self._idle.set()
                # A timer that resolves this worker's wake-up future rather than asyncio.wait_for, which
                # wraps the wait in a task of its own: a worker keeping up with the intake comes here
                # once per unit.
                woken: asyncio.Future[None] = loop.create_future()
                self._sleepers.add(woken)
                timer = loop.call_later(max(0.001, delay) if delay is not None else 1.0, _resolve, woken)
                try:
                    await woken
                finally:
                    timer.cancel()
                    self._sleepers.discard(woken)
                continue
            if self._sleepers and self._more_to_take():
                self._wake_one()  # pass the wake on: another idle worker takes the next unit (or sets its timer)
            claims = self._claims
            if claims is not None:
                verdict = await claims.enter(unit)
                if verdict != "run":
                    self._not_here(unit, verdict == "elsewhere")
                    continue
            # The handler runs in this loop rather than in a helper coroutine: one frame less per unit.
            self._running += 1
            ok = False
            dead: set[str] = set()
            started = time.time() if claims is not None else 0.0
            try:
                await self.handler(unit)
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.event("unit_failed", level="warning", kind=unit.kind, object_ids=list(unit.object_ids), error=repr(exc))
                dead = await self._dead_letter_if_spent(unit, exc)
            finally:
                self._running -= 1
                if claims is not None:
                    if log.enabled("debug"):  # who ran what when: the failover proof reads these
                        log.event("unit_ran", level="debug", kind=unit.kind, object_ids=list(unit.object_ids),
                                  started=started, finished=time.time(), ok=ok)
                    with contextlib.suppress(Exception):
                        await claims.leave_unit(unit)
                self._settle(unit, ok, dead)

    async def _dead_letter_if_spent(self, unit: WorkUnit, exc: Exception) -> set[str]:
        """Count a failed attempt; returns the objects that went to the dead letters (they are done):
        those with ``max_attempts`` failures that are not retried without limit (:data:`RETRIED_WITHOUT_LIMIT`)."""
        if isinstance(exc, RETRIED_WITHOUT_LIMIT):
            return set()
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        attempt = {"at": time.time(), "error": error, "type": type(exc).__name__, "status": getattr(exc, "status", None)}
        spent = []
        for oid in unit.object_ids:
            p = self._pending.get((unit.kind, oid))
            if p is None:
                continue
            p.attempts.append(attempt)
            if len(p.attempts) >= self.max_attempts:
                spent.append((oid, p))
        dead: set[str] = set()
        in_unit = {e.seq for e in unit.entries}
        for oid, p in spent:
            seqs = [e.seq for e in p.entries if e.seq in in_unit]
            try:
                dl = await self.store.add_dead_letter(
                    unit.kind, oid, {"cause": "the handler failed", "journal_seqs": seqs}, error, p.attempts
                )
            except Exception as store_exc:
                # Not written: the object stays pending and its next failure tries again.
                log.event("dead_letter_failed", level="error", kind=unit.kind, object_id=oid, error=repr(store_exc))
                continue
            dead.add(oid)
            DEAD_LETTERED.inc()
            log.event("dead_lettered", level="error", kind=unit.kind, object_id=oid, dead_letter_id=dl,
                      error=error, attempts=len(p.attempts))
        return dead

    def _settle(self, unit: WorkUnit, ok: bool, dead: Collection[str] = ()) -> None:
        """After a unit ran: its entries are done (``ok``, or its objects in ``dead``: they went to
        the dead letters), or its objects back off before a retry."""
        single = len(unit.object_ids) == 1
        done_seqs = [e.seq for e in unit.entries]
        done = set() if single else set(done_seqs)
        for oid in unit.object_ids:
            k = (unit.kind, oid)
            self._busy.discard(k)
            p = self._pending.get(k)
            if p is None:
                continue
            if not ok and oid in dead:
                taken = set(done_seqs)
                self._done.extend(e.seq for e in p.entries if e.seq in taken)
                p.entries = [e for e in p.entries if e.seq not in taken]
                p.failures = 0
                p.attempts = []
                p.not_before = 0.0
                p.early = False
                self._flush_wake.set()
            elif ok:
                if single:
                    # The unit took every entry the object had; later ones were appended after them.
                    del p.entries[: len(unit.entries)]
                else:
                    p.entries = [e for e in p.entries if e.seq not in done]
                p.failures = 0
                p.attempts = []
                p.not_before = 0.0
                p.early = False
            else:
                p.failures += 1
                p.not_before = self.clock() + Backoff(self.retry_base_seconds, self.retry_max_seconds).delay(p.failures)
                if self._done:
                    self._flush_wake.set()  # an object backing off may be what holds done entries back
                if k[0] not in self.batch_kinds:
                    heapq.heappush(self._delayed, (p.not_before, k))
            if not p.entries:
                del self._pending[k]
                if k[0] in self.batch_kinds:
                    self._batch_keys[k[0]].discard(k)
            elif ok or oid in dead:
                self._make_ready(k, p)
        self._busy_kinds.discard(unit.kind)
        if ok and self._last_failed.get(unit.kind):
            self._release_backoffs(unit.kind)
        self._last_failed[unit.kind] = not ok
        if ok:
            self._done.extend(done_seqs)
            self._flush_wake.set()
            self.units_handled += 1

    def _not_here(self, unit: WorkUnit, handed_off: bool) -> None:
        """The gate said no: the unit's entries went to another replica (drop them here, they are not
        done), or another replica holds one of its objects (try again shortly, not a failure)."""
        taken = {e.seq for e in unit.entries}
        retry_at = self.clock() + (0.0 if handed_off or self.gate is None else self.gate.busy_wait())
        for oid in unit.object_ids:
            k = (unit.kind, oid)
            self._busy.discard(k)
            p = self._pending.get(k)
            if p is None:
                continue
            if handed_off:
                p.entries = [e for e in p.entries if e.seq not in taken]
                if not p.entries:
                    del self._pending[k]
                    if k[0] in self.batch_kinds:
                        self._batch_keys[k[0]].discard(k)
                    continue
                self._make_ready(k, p)
                continue
            p.not_before = max(p.not_before, retry_at)
            if k[0] not in self.batch_kinds:
                heapq.heappush(self._delayed, (p.not_before, k))
        if handed_off:
            self._known.difference_update(taken)
        self._busy_kinds.discard(unit.kind)

    def _release_backoffs(self, kind: str) -> None:
        """A unit of ``kind`` succeeded after one of that kind failed: the service the failures met
        may be back (AskCody after an outage, Graph after a storm). Every object of that kind backing
        off gets one early try now instead of waiting out its backoff (up to ``retry_max_seconds``).

        Per kind, because units of other kinds may not touch the service that failed (a reconcile
        round can succeed on Graph while AskCody is down) and would spend the early tries during the
        outage. At most one early try per backoff period, so an object that fails for reasons of its
        own runs at most twice as often as its backoff says, however many other units succeed."""
        now = self.clock()
        candidates = [key for _, key in self._delayed if key[0] == kind]
        candidates.extend(self._batch_keys.get(kind, ()))
        released = 0
        for key in candidates:
            p = self._pending.get(key)
            if p is None or p.early or not p.failures or p.not_before <= now or key in self._busy:
                continue
            p.early = True
            p.not_before = now
            self._make_ready(key, p)
            released += 1
        if released:
            log.event("backoffs_released", kind=kind, objects=released, reason="a unit succeeded after failures")

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            await self._flush_done()
            await asyncio.sleep(self.done_flush_seconds)  # batches the deletes; not a wait for work

    def publish_gauges(self) -> None:
        """Set the queue gauges; called at every scrape. Not after each flush of done entries (up to
        20 times a second): the oldest pending change is a scan over every pending object, about 6 ms
        with 100,000 of them (a reconcile's backlog), 12% of the event loop at that rate."""
        QUEUE_DEPTH.set(len(self._pending))
        WORKERS_BUSY.set(self._running)
        oldest = self.oldest_pending()
        OLDEST_PENDING_AGE.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    @property
    def done_waiting(self) -> int:
        """Done entries not deleted yet (waiting for the entries below them, see the module doc)."""
        return len(self._done)

    def _lowest_pending(self) -> int | None:
        """The lowest entry number pending or running here; ``None`` when nothing is."""
        if not self._pending:
            self._unordered = False
            return None
        if len(self._pending) > WATERMARK_OBJECTS_MAX:
            return None  # finding it would cost more than the deletes it saves
        return min((p.entries[0].seq for p in self._pending.values() if p.entries), default=None)

    async def _flush_done(self, everything: bool = False) -> None:
        if not self._done:
            return
        done, held = self._done, []
        done.sort()  # mostly sorted already (what waited) plus the newly done: a merge
        low = None if everything or self._unordered else self._lowest_pending()
        if low is not None:
            now = self.clock()
            if low != self._low:
                self._low, self._low_since = low, now
            if len(done) < DONE_HOLD_MAX and now - self._low_since < DONE_HOLD_SECONDS:
                if self._flushed_below == low:
                    return  # everything done below ``low`` is deleted; what came since is above it
                cut = bisect.bisect_left(done, low)
                done, held = done[:cut], done[cut:]
                self._flushed_below = low
        self._done = held
        if not done:
            return
        try:
            await self.store.mark_done(done)
        except asyncio.CancelledError:
            self._done.extend(done)  # the stop cancelled this flush: its own flush deletes them
            raise
        except Exception as exc:
            log.event("mark_done_failed", level="error", error=repr(exc))
            self._done.extend(done)
            return
        self._known.difference_update(done)


def _resolve(woken: asyncio.Future[None]) -> None:
    """Wake a worker waiting on ``woken`` (its timer ran out, or the dispatcher stops)."""
    if not woken.done():
        woken.set_result(None)
