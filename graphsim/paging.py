"""Opaque page tokens: each ``@odata.nextLink`` / ``@odata.deltaLink`` names a server-side cursor."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class CursorStore(Generic[T]):
    """Cursors by random token, the least recently issued forgotten beyond ``capacity``."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, T] = OrderedDict()

    def put(self, value: T) -> str:
        """Store ``value``; returns its new opaque token."""
        token = secrets.token_urlsafe(24)
        self._items[token] = value
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return token

    def get(self, token: str) -> T | None:
        return self._items.get(token)

    def clear(self) -> None:
        """Forget every token issued so far."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
