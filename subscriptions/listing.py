"""``reactor subscriptions list``: our records with their live state on Graph, as rows for people and JSON."""

from __future__ import annotations

from typing import Any

from reactor.errors import NotFoundError, ReactorError
from reactor.times import to_iso
from subscriptions.manager import SubscriptionManager


async def live_rows(manager: SubscriptionManager) -> list[dict[str, Any]]:
    """Our records with their live state on Graph (for ``reactor subscriptions list``)."""
    now = manager.clock()
    rows: list[dict[str, Any]] = []
    for record in await manager.store.subscriptions():
        if record.pending:
            continue
        row: dict[str, Any] = {
            "id": record.id,
            "resource": record.resource,
            "changeType": record.change_type,
            "notificationUrl": record.notification_url,
            "lifecycleNotificationUrl": record.lifecycle_url,
            "expirationDateTime": to_iso(record.expires_at),
            "secondsToExpiry": round(record.expires_at - now, 1),
            "renewAt": to_iso(manager.renew_at(record)),
        }
        try:
            live = await manager.api.get(record.id)
        except NotFoundError:
            row["live"] = False
        except ReactorError as exc:
            row["live"] = None
            row["error"] = str(exc)
        else:
            row["live"] = True
            row["liveExpirationDateTime"] = live.get("expirationDateTime")
        rows.append(row)
    return rows
