"""Durable state behind one interface (:class:`Store`): SQLite, the embedded default, or PostgreSQL."""

from reactor.config import StoreSettings
from reactor.store.base import (
    AppliedChange,
    AuditRow,
    DeadLetter,
    JournalEntry,
    JournalItem,
    ObjectMapping,
    Store,
    SubscriptionRecord,
)
from reactor.store.entra_token import EntraTokenPassword
from reactor.store.postgres import PostgresStore
from reactor.store.sqlite import SQLiteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(settings: StoreSettings) -> Store:
    """The store named by ``store.url`` (not yet opened: ``await store.open()``): ``postgresql://…``
    (password in the URL or in ``store.password``, or with ``store.entra_auth`` an access token of the
    managed identity for every new connection) or ``sqlite:///path``."""
    if settings.url.startswith(POSTGRES_SCHEMES):
        if settings.entra_auth:
            return PostgresStore(settings.url, password=EntraTokenPassword())
        return PostgresStore(settings.url, password=settings.password)
    return SQLiteStore(settings.sqlite_path)


__all__ = [
    "AppliedChange",
    "AuditRow",
    "DeadLetter",
    "JournalEntry",
    "JournalItem",
    "ObjectMapping",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "SubscriptionRecord",
    "open_store",
]
