"""The dispatcher: an in-process queue fed from the journal.

Pending journal entries are coalesced per object ``(kind, object_id)``: any number of notifications
for one user become one unit of work. Kinds listed in ``batch_kinds`` (groups: one groups-delta round
serves every dirty group) are taken all at once as a single unit. Guarantees:

- never two workers on the same object (or on the same batched kind) at once;
- a bounded pool of workers;
- journal entries are marked done only after the handler returned without raising;
- a unit whose handler raised stays pending and is retried after a backoff;
- on start, everything journaled and not done is queued again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from reactor import log
from reactor.metrics import APPLY_LAG_SECONDS, OLDEST_PENDING_AGE, QUEUE_DEPTH, WORKERS_BUSY
from reactor.store.base import JournalEntry, Store

Key = tuple[str, str]


@dataclass(frozen=True)
class WorkUnit:
    """What a handler is given: one object (or, for a batched kind, several) and its journal entries."""

    kind: str
    object_ids: tuple[str, ...]
    entries: tuple[JournalEntry, ...]

    @property
    def object_id(self) -> str:
        return self.object_ids[0]

    @property
    def oldest_received_at(self) -> float:
        return min((e.received_at for e in self.entries), default=time.time())


Handler = Callable[[WorkUnit], Awaitable[None]]


@dataclass
class _Pending:
    entries: list[JournalEntry] = field(default_factory=list)
    not_before: float = 0.0
    failures: int = 0


class Dispatcher:
    """Coalesce journaled changes per object and run them on a bounded worker pool."""

    def __init__(
        self,
        store: Store,
        handler: Handler,
        *,
        workers: int = 4,
        batch_kinds: Collection[str] = ("group",),
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.handler = handler
        self.workers = workers
        self.batch_kinds = frozenset(batch_kinds)
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.clock = clock
        self._pending: OrderedDict[Key, _Pending] = OrderedDict()
        self._busy: set[Key] = set()
        self._busy_kinds: set[str] = set()
        self._known: set[int] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.units_handled = 0
        self.failures = 0

    # feeding -------------------------------------------------------------------------------------
    def submit(self, entries: Sequence[JournalEntry]) -> None:
        """Queue journaled entries (already durable). Entries seen before are ignored."""
        for e in entries:
            if e.seq in self._known:
                continue
            self._known.add(e.seq)
            self._pending.setdefault((e.kind, e.object_id), _Pending()).entries.append(e)
        if entries:
            self._idle.clear()
            self._update_gauges()
            self._wake.set()

    async def recover(self) -> int:
        """Queue everything journaled and not done (on start). Returns how many entries."""
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
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reactor-worker-{i}"))

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish in-flight units (up to ``timeout``), leave the rest journaled."""
        self._stopping = True
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, still = await asyncio.wait(tasks, timeout=timeout)
        for t in still:
            t.cancel()
        for t in still:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and all(not t.done() for t in self._tasks)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def oldest_pending(self) -> float | None:
        oldest = [e.received_at for p in self._pending.values() for e in p.entries[:1]]
        return min(oldest) if oldest else None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; ``False`` on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _take(self) -> tuple[WorkUnit | None, float | None]:
        """The next runnable unit, or the delay until one becomes runnable."""
        now = self.clock()
        soonest: float | None = None
        for key, p in self._pending.items():
            kind = key[0]
            if key in self._busy or kind in self._busy_kinds:
                continue
            if p.not_before > now:
                wait = p.not_before - now
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            if kind in self.batch_kinds:
                keys = [k for k, q in self._pending.items() if k[0] == kind and q.not_before <= now]
                self._busy_kinds.add(kind)
            else:
                keys = [key]
            entries: list[JournalEntry] = []
            for k in keys:
                entries.extend(self._pending[k].entries)
                self._busy.add(k)
            entries.sort(key=lambda e: e.seq)
            return WorkUnit(kind=kind, object_ids=tuple(k[1] for k in keys), entries=tuple(entries)), None
        return None, soonest

    async def _worker(self) -> None:
        while not self._stopping:
            self._wake.clear()
            unit, delay = self._take()
            if unit is None:
                if not self._busy and delay is None:
                    self._idle.set()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay if delay is not None else 1.0)
                except TimeoutError:
                    pass
                continue
            await self._run(unit)

    async def _run(self, unit: WorkUnit) -> None:
        keys = [(unit.kind, oid) for oid in unit.object_ids]
        WORKERS_BUSY.inc()
        ok = False
        try:
            await self.handler(unit)
            ok = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            log.event("unit_failed", level="warning", kind=unit.kind, object_ids=list(unit.object_ids), error=repr(exc))
        finally:
            WORKERS_BUSY.dec()
            done_seqs = {e.seq for e in unit.entries}
            for k in keys:
                self._busy.discard(k)
                p = self._pending.get(k)
                if p is None:
                    continue
                if ok:
                    p.entries = [e for e in p.entries if e.seq not in done_seqs]
                    p.failures = 0
                    p.not_before = 0.0
                else:
                    p.failures += 1
                    p.not_before = self.clock() + min(
                        self.retry_max_seconds, self.retry_base_seconds * 2 ** (p.failures - 1)
                    )
                if not p.entries:
                    del self._pending[k]
            self._busy_kinds.discard(unit.kind)
            self._wake.set()
        if ok:
            try:
                await self.store.mark_done(sorted(done_seqs))
            except Exception as exc:
                log.event("mark_done_failed", level="error", error=repr(exc))
            self._known.difference_update(done_seqs)
            self.units_handled += 1
            if unit.entries and unit.kind in ("user", "group"):
                APPLY_LAG_SECONDS.observe(max(0.0, time.time() - unit.oldest_received_at))
        self._update_gauges()

    def _update_gauges(self) -> None:
        QUEUE_DEPTH.set(len(self._pending))
        oldest = self.oldest_pending()
        OLDEST_PENDING_AGE.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
