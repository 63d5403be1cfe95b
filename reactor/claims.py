"""This replica's claims on objects, batched: one task sends every claim and release that piled up
while the previous statement was in flight, so that thousands of units a second cost a few round
trips to PostgreSQL rather than two each (the journal's group commit, for claims).

Order is what makes it safe. The one task first releases, then claims, each awaited: a key released
and wanted again is claimed after the release reached the database, never before. A key this
replica holds and wants again before its release was sent is simply kept. ``note`` claims ahead the
keys of entries just journaled here, so a worker usually finds its unit's object already held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

from reactor import log
from reactor.store.base import ClaimKey
from reactor.tasks import cancelled

AHEAD_PER_STATEMENT = 5_000
"""Claims made ahead in one statement at most (a burst of thousands of journaled entries)."""


class ClaimStore(Protocol):
    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]: ...

    async def release(self, keys: Sequence[ClaimKey]) -> None: ...


class ClaimBook:
    """Claims held by this replica (``ttl``: until the next heartbeat extends them)."""

    def __init__(self, store: ClaimStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.held: set[ClaimKey] = set()
        """Keys the database says this replica holds (released keys leave it before the release is sent)."""
        self._wanted: dict[ClaimKey, list[asyncio.Future[bool]]] = {}
        self._ahead: set[ClaimKey] = set()
        self._releasing: set[ClaimKey] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reactor-claims")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None
        for futures in self._wanted.values():
            for f in futures:
                if not f.done():
                    f.set_result(False)
        self._wanted.clear()

    def note(self, keys: Iterable[ClaimKey]) -> None:
        """Claim these soon (entries for them were just queued here); nobody waits for the answer."""
        added = False
        for k in keys:
            if k in self._releasing:
                self._releasing.discard(k)  # still held: keep it
            elif k not in self.held:
                self._ahead.add(k)
                added = True
        if added:
            self._wake.set()

    async def acquire(self, keys: Sequence[ClaimKey]) -> bool:
        """Whether this replica holds every key now (claiming those it does not)."""
        missing = []
        for k in keys:
            if k in self._releasing:
                self._releasing.discard(k)
            if k not in self.held:
                missing.append(k)
        if not missing:
            return True
        loop = asyncio.get_running_loop()
        futures = []
        for k in missing:
            f: asyncio.Future[bool] = loop.create_future()
            self._wanted.setdefault(k, []).append(f)
            futures.append(f)
        self._wake.set()
        results = await asyncio.gather(*futures)
        if all(results):
            return True
        self.release([k for k, ok in zip(missing, results, strict=True) if ok])
        return False

    def release(self, keys: Iterable[ClaimKey]) -> None:
        """Give these up (sent with the next statement; until then they stay held)."""
        added = False
        for k in keys:
            if k in self.held:
                self._releasing.add(k)
                added = True
        if added:
            self._wake.set()

    async def flush(self) -> None:
        """Send what is waiting now (the loop does this by itself; for a stop and for tests)."""
        await self._cycle()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store failure: the keys stay as they were, tried again
                log.event("claims_failed", level="warning", error=repr(exc))
                await asyncio.sleep(0.2)  # a pause before asking a failing store again, not a wait for work
                self._wake.set()

    async def _cycle(self) -> None:
        releasing, self._releasing = self._releasing, set()
        if releasing:
            self.held -= releasing
            try:
                await self.store.release(list(releasing))
            except BaseException:
                # Unknown whether it was done: the keys count as not held, and the release is sent
                # again before any claim (it is idempotent).
                self._releasing |= releasing
                raise
        for k in [k for k in self._wanted if k in self.held]:
            for f in self._wanted.pop(k):
                if not f.done():
                    f.set_result(True)
        wanted = list(self._wanted)
        ahead = [k for k in self._ahead if k not in self.held and k not in self._wanted][:AHEAD_PER_STATEMENT]
        self._ahead.difference_update(ahead)
        self._ahead.difference_update(self.held)
        if self._ahead:
            self._wake.set()  # the rest with the next statement
        asking = wanted + ahead
        if not asking:
            return
        try:
            got = set(await self.store.claim(asking, self.ttl))
        except BaseException:
            # Unknown whether the claim was made: release them (idempotent), so that no claim of ours
            # outlives the doubt (heartbeats would keep it); the units waiting try again shortly.
            self._releasing |= set(asking)
            for k in wanted:
                for f in self._wanted.pop(k, []):
                    if not f.done():
                        f.set_result(False)
            raise
        self.held |= got
        for k in wanted:
            for f in self._wanted.pop(k, []):
                if not f.done():
                    f.set_result(k in got)
