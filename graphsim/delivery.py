"""Delivery of change and lifecycle notifications: a queue, a sender task, batching, retries.

Items wait in a queue ordered by due time. The sender waits :attr:`Delivery.batch_window` after the
first due item so that a burst goes out together, then POSTs ``{"value": [...]}`` per URL, at most
:attr:`Delivery.batch_size` items per request. A 2xx answer is delivery; anything else (an error
status, a refused connection, no answer within :attr:`Delivery.timeout`) puts the items back with
jittered exponential backoff (:attr:`retry_base` doubling up to :attr:`retry_max_delay`) until
:attr:`retry_horizon` seconds after the first attempt, when they are abandoned.
All timing here is real (monotonic) time; the simulator's injected clock is for expirations only.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from graphsim.faults import Faults

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    url: str = field(compare=False)
    item: dict[str, Any] = field(compare=False)
    lifecycle: bool = field(compare=False, default=False)
    first_attempt: float | None = field(compare=False, default=None)
    attempts: int = field(compare=False, default=0)
    outcome: asyncio.Future[bool] | None = field(compare=False, default=None)


class Delivery:
    """The notification sender of one simulator."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.batch_size = 20
        self.batch_window = 0.02
        self.timeout = 10.0
        self.retry_base = 0.1
        self.retry_max_delay = 2.0
        self.retry_horizon = 4 * 3600.0
        self.max_concurrency = 8
        self.delivered: list[dict[str, Any]] = []
        """Change-notification items POSTed and answered 2xx."""
        self.lifecycle_delivered: list[dict[str, Any]] = []
        """Lifecycle-notification items POSTed and answered 2xx."""
        self.abandoned: list[dict[str, Any]] = []
        """Items given up after :attr:`retry_horizon`."""
        self.stats: Counter[str] = Counter()
        """``queued``, ``dropped``, ``duplicated``, ``posts``, ``failed_posts``, ``delivered``, ``abandoned``."""
        self.session: aiohttp.ClientSession | None = None
        self._queue: list[_Pending] = []
        self._seq = 0
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._posts: dict[asyncio.Task[None], list[_Pending]] = {}

    @property
    def pending(self) -> int:
        """Items queued or in flight."""
        return len(self._queue) + self._in_flight

    def enqueue(self, url: str, item: dict[str, Any]) -> None:
        """Queue a change-notification item; the delivery faults apply."""
        self.stats["queued"] += 1
        if self.faults.drops():
            self.stats["dropped"] += 1
            return
        copies = 1
        if self.faults.duplicates():
            self.stats["duplicated"] += 1
            copies = 2
        due = time.monotonic() + max(0.0, self.faults.delay_seconds)
        for _ in range(copies):
            self._push(_Pending(due, self._next_seq(), url, dict(item)))

    def enqueue_lifecycle(self, url: str, item: dict[str, Any]) -> asyncio.Future[bool] | None:
        """Queue a lifecycle item (no faults); the future, when a loop runs, tells whether it was delivered."""
        outcome: asyncio.Future[bool] | None = None
        with suppress(RuntimeError):
            outcome = asyncio.get_running_loop().create_future()
        self._push(_Pending(time.monotonic(), self._next_seq(), url, item, lifecycle=True, outcome=outcome))
        return outcome

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push(self, pending: _Pending) -> None:
        heapq.heappush(self._queue, pending)
        self._wake.set()
        self._changed.set()

    async def start(self) -> None:
        """Open the HTTP session and start the sender task."""
        if self._task is not None:
            return
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        if self._queue:
            self._wake.set()
        self.session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="graphsim-delivery")

    async def stop(self) -> None:
        """Stop the sender (in-flight items go back to the queue) and close the session."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        posts = list(self._posts)
        for post in posts:
            post.cancel()
        for post in posts:
            with suppress(asyncio.CancelledError):
                await post
        for never_ran in list(self._posts.values()):
            self._in_flight -= len(never_ran)
            for pending in never_ran:
                self._push(pending)
        self._posts.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return once nothing is queued or in flight; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self.pending:
                self._changed.clear()
                await self._changed.wait()

    async def _run(self) -> None:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        while True:
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()
                continue
            wait = self._queue[0].due - time.monotonic()
            if wait > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            if self.batch_window > 0:
                await asyncio.sleep(self.batch_window)
            for url, batch in self._take_batches():
                task = asyncio.create_task(self._post(url, batch, semaphore))
                self._posts[task] = batch

    def _take_batches(self) -> list[tuple[str, list[_Pending]]]:
        now = time.monotonic()
        ready: list[_Pending] = []
        while self._queue and self._queue[0].due <= now:
            ready.append(heapq.heappop(self._queue))
        if self.faults.reorder:
            self.faults.random.shuffle(ready)
        by_url: dict[tuple[str, bool], list[_Pending]] = {}
        for pending in ready:
            by_url.setdefault((pending.url, pending.lifecycle), []).append(pending)
        self._in_flight += len(ready)
        size = max(1, self.batch_size)
        return [
            (url, items[i : i + size]) for (url, _), items in by_url.items() for i in range(0, len(items), size)
        ]

    async def _post(self, url: str, batch: list[_Pending], semaphore: asyncio.Semaphore) -> None:
        ok = False
        finished = False
        current = asyncio.current_task()
        if current is not None:
            self._posts.pop(current, None)
        try:
            async with semaphore:
                now = time.monotonic()
                for pending in batch:
                    if pending.first_attempt is None:
                        pending.first_attempt = now
                ok = await self._send(url, [p.item for p in batch])
            finished = True
        finally:
            self._in_flight -= len(batch)
            if not finished:
                for pending in batch:
                    self._push(pending)
            else:
                self._settle(batch, ok)
            self._changed.set()

    async def _send(self, url: str, items: list[dict[str, Any]]) -> bool:
        self.stats["posts"] += 1
        if self.session is None:
            return False
        try:
            async with self.session.post(
                url,
                data=orjson.dumps({"value": items}),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        except Exception:
            log.exception("graphsim: posting notifications to %s failed", url)
            ok = False
        if not ok:
            self.stats["failed_posts"] += 1
        return ok

    def _settle(self, batch: list[_Pending], ok: bool) -> None:
        now = time.monotonic()
        for pending in batch:
            if ok:
                self.stats["delivered"] += 1
                (self.lifecycle_delivered if pending.lifecycle else self.delivered).append(pending.item)
                _resolve(pending, True)
                continue
            pending.attempts += 1
            if pending.first_attempt is not None and now - pending.first_attempt >= self.retry_horizon:
                self.stats["abandoned"] += 1
                self.abandoned.append(pending.item)
                _resolve(pending, False)
                continue
            backoff = min(self.retry_max_delay, self.retry_base * 2 ** (pending.attempts - 1))
            pending.due = now + backoff * (0.5 + self.faults.random.random() / 2)
            self._push(pending)


def _resolve(pending: _Pending, delivered: bool) -> None:
    if pending.outcome is not None and not pending.outcome.done():
        pending.outcome.set_result(delivered)
