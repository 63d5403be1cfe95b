"""The Graph subscription REST calls, and nothing else: list, create, read, renew, reauthorize, delete.

Which calls to make, and when, is the manager's business (:mod:`subscriptions.manager`); the
timing rules are the policy's (:mod:`subscriptions.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from reactor.errors import NotFoundError
from reactor.graph.client import GraphClient


def _path(subscription_id: str) -> str:
    return f"subscriptions/{quote(subscription_id, safe='')}"


@dataclass(frozen=True)
class SubscriptionsApi:
    """``/subscriptions`` on Graph through the reactor's Graph client (its retries and error mapping)."""

    client: GraphClient

    async def list(self) -> list[dict[str, Any]]:
        """Every subscription of this app on Graph (all pages), ours and foreign."""
        out: list[dict[str, Any]] = []
        url: str | None = "subscriptions"
        while url:
            page = await self.client.get_json(url, operation="subscription_list")
            out.extend(s for s in page.get("value", ()) if isinstance(s, dict))
            url = page.get("@odata.nextLink")
        return out

    async def create(
        self, *, resource: str, change_type: str, notification_url: str, lifecycle_url: str, expires: str, client_state: str
    ) -> dict[str, Any]:
        """``POST /subscriptions`` (not retried blindly: a retried create can duplicate)."""
        body = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": resource,
            "expirationDateTime": expires,
            "clientState": client_state,
        }
        return await self.client.post_json("subscriptions", body, operation="subscription_create")

    async def get(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as Graph has it (NotFoundError when it is gone)."""
        return await self.client.get_json(_path(subscription_id), operation="subscription_get")

    async def renew(self, subscription_id: str, expires: str) -> dict[str, Any]:
        """``PATCH`` a new ``expirationDateTime``; Graph answers with the one it granted."""
        body = {"expirationDateTime": expires}
        return await self.client.patch_json(_path(subscription_id), body, operation="subscription_renew")

    async def reauthorize(self, subscription_id: str) -> None:
        """``POST /subscriptions/{id}/reauthorize`` (idempotent: retried)."""
        await self.client.post_json(f"{_path(subscription_id)}/reauthorize", operation="subscription_reauthorize", retry=True)

    async def delete(self, subscription_id: str) -> bool:
        """Delete a subscription; False when it was already gone."""
        try:
            await self.client.delete(_path(subscription_id), operation="subscription_delete")
        except NotFoundError:
            return False
        return True
