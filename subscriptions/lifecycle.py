"""Handling one lifecycle notification item (already accepted and journaled by the intake).

- ``reauthorizationRequired``: renew when due, else reauthorize; a repeat within seconds of a create,
  renewal or reauthorization is skipped (``REAUTHORIZE_DEBOUNCE_SECONDS``).
- ``subscriptionRemoved``: create the subscription again, then ``on_gap`` (a reconcile).
- ``missed``: ``on_gap``: notifications were lost, only a reconcile can recover them.

Graph documents only ``reauthorizationRequired`` for users and groups; the other two are handled all
the same. Items of subscriptions that are not ours are ignored; the ``clientState`` was checked by the
intake (which does not journal it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactor import log
from subscriptions.manager import SubscriptionManager

REAUTHORIZATION_REQUIRED = "reauthorizationRequired"
SUBSCRIPTION_REMOVED = "subscriptionRemoved"
MISSED = "missed"


async def handle_lifecycle(manager: SubscriptionManager, item: Mapping[str, Any]) -> str:
    """Act on one lifecycle item; return a short description of what was done (for logs and tests)."""
    subscription_id = str(item.get("subscriptionId") or "")
    event = str(item.get("lifecycleEvent") or "")
    record = manager.record_by_id(subscription_id)
    if record is None:
        outcome = "ignored: not our subscription"
    elif event == REAUTHORIZATION_REQUIRED:
        outcome = await manager.reauthorize(subscription_id)
    elif event == SUBSCRIPTION_REMOVED:
        outcome = await manager.recreate(subscription_id, "was removed by Graph (subscriptionRemoved)")
    elif event == MISSED:
        await manager.gap(f"Graph reported missed notifications for {record.resource} subscription {subscription_id}")
        outcome = "reconcile requested"
    else:
        outcome = f"ignored: unknown lifecycle event {event!r}"
    log.event("lifecycle_event", event=event or None, subscription_id=subscription_id or None, outcome=outcome)
    return outcome
