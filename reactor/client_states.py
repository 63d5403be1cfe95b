"""The clientState of each of our subscriptions, as the intake checks them: cached from the store,
reloaded when an unknown subscription id comes in, and the pending ones of subscriptions being created."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable

from reactor.errors import StoreError
from reactor.store.base import Subscriptions

_REFRESH_INTERVAL = 0.05


class ClientStates:
    """The clientState of each of our subscriptions, cached from the store.

    An unknown subscription id is checked against the store before its items are dropped: it triggers
    a reload (at most one every 50 ms; a request that comes sooner waits for the next one, shared by
    every request waiting), so that a subscription just created by this process, another replica or
    ``reactor subscriptions ensure`` is recognised, while a flood of forged ids costs at most 20 small
    reads a second.

    A subscription being created is stored as *pending* (its clientState, before the POST to Graph:
    Graph may deliver before the 201 reaches us, or before the record is written): an item of an
    unknown subscription id whose clientState matches a pending one is accepted.
    """

    def __init__(self, store: Subscriptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._states: dict[str, bytes] = {}
        self._pending: tuple[bytes, ...] = ()
        self._loaded_at = float("-inf")
        self._next: asyncio.Future[None] | None = None

    async def refresh(self) -> None:
        records = await self.store.subscriptions()
        self._states = {r.id.lower(): r.client_state.encode() for r in records if not r.pending}
        self._pending = tuple(r.client_state.encode() for r in records if r.pending)
        self._loaded_at = self.clock()

    def pending_matches(self, client_state: bytes) -> bool:
        """Whether ``client_state`` is that of a subscription being created (constant-time compares)."""
        found = False
        for state in self._pending:
            found |= hmac.compare_digest(client_state, state)
        return found

    def set(self, subscription_id: str, client_state: str) -> None:
        self._states[subscription_id.lower()] = client_state.encode()

    def forget(self, subscription_id: str) -> None:
        self._states.pop(subscription_id.lower(), None)

    def cached(self, subscription_id: str) -> bytes | None:
        """The clientState if it is in the cache (no store access)."""
        return self._states.get(subscription_id.lower())

    async def get(self, subscription_id: str) -> bytes | None:
        """The clientState of ``subscription_id``, reloading from the store once when it is unknown."""
        key = subscription_id.lower()
        state = self._states.get(key)
        if state is None:
            try:
                await self._reload()
            except StoreError:
                return None
            state = self._states.get(key)
        return state

    async def _reload(self) -> None:
        """One reload, shared by every caller until it is done, and no sooner than 50 ms after the last."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._reload_after(self._loaded_at + _REFRESH_INTERVAL - self.clock()))
        await asyncio.shield(self._next)

    async def _reload_after(self, wait: float) -> None:
        try:
            if wait > 0:
                await asyncio.sleep(wait)  # the rate limit of reloads, not a wait for work
            await self.refresh()
        finally:
            self._next = None
