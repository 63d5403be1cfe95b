"""Journal changes the way the intake does, for tests that feed a dispatcher by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reactor.store.base import Journal, JournalEntry, JournalItem, ObjectKind


async def journal(
    store: Journal,
    *object_ids: str,
    kind: ObjectKind = "user",
    subscription_id: str = "sub",
    payload: Callable[[str], dict[str, Any]] = lambda _: {},
) -> list[JournalEntry]:
    """Append an ``updated`` notification for each of ``object_ids``; the entries, with their numbers."""
    items = [JournalItem(kind, oid, time.time(), payload(oid), subscription_id, "updated") for oid in object_ids]
    seqs = await store.append(items)
    return [JournalEntry(i.kind, i.object_id, i.received_at, i.payload, i.subscription_id, i.change_type, s)
            for i, s in zip(items, seqs, strict=True)]
