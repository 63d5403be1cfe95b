"""Durable state behind one interface (:class:`Store`); SQLite is the embedded default."""

from reactor.config import StoreSettings
from reactor.store.base import (
    AppliedChange,
    DeadLetter,
    JournalEntry,
    JournalItem,
    ObjectMapping,
    Store,
    SubscriptionRecord,
)
from reactor.store.sqlite import SQLiteStore


def open_store(settings: StoreSettings) -> Store:
    """The store named by ``store.url`` (not yet opened: ``await store.open()``)."""
    return SQLiteStore(settings.sqlite_path)


__all__ = [
    "AppliedChange",
    "DeadLetter",
    "JournalEntry",
    "JournalItem",
    "ObjectMapping",
    "SQLiteStore",
    "Store",
    "SubscriptionRecord",
    "open_store",
]
