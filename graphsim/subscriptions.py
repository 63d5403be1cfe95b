"""Change-notification subscriptions: validation, lifetime rules, quota, conflicts, and which
subscriptions a change concerns.

Lifetime: the requested ``expirationDateTime`` is raised to now + 45 minutes, lowered to now + 41,760
minutes and to now + :attr:`SubscriptionRegistry.lifetime_cap` when set. A subscription whose
expiration has passed (by the injected clock) is gone: reads, renewals and notifications no longer see it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from graphsim.responses import GraphHTTPError
from graphsim.timestamps import parse_iso, to_iso

MIN_LIFETIME = 45 * 60.0
MAX_LIFETIME = 41_760 * 60.0
MAX_CLIENT_STATE = 128
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
_RESOURCE = re.compile(r"^(users|groups)(?:/([^/]+)(/members)?)?$", re.IGNORECASE)
ResourceKind = Literal["users", "groups"]


def _invalid(message: str) -> GraphHTTPError:
    return GraphHTTPError(400, "InvalidRequest", message)


@dataclass
class Subscription:
    """One subscription. ``object_id`` None means the whole collection; ``members_only`` is ``groups/{id}/members``."""

    id: str
    resource: str
    kind: ResourceKind
    object_id: str | None
    members_only: bool
    change_type: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: float
    application_id: str
    creator_id: str

    @property
    def key(self) -> tuple[str, str | None, bool, frozenset[str]]:
        """What two subscriptions of one app may not share."""
        return (self.kind, self.object_id, self.members_only, self.change_types)

    def as_graph(self) -> dict[str, Any]:
        """The subscription as Graph returns it."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": to_iso(self.expires_at),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def notification(self, tenant_id: str, object_id: str, change_type: str, **resource_data: Any) -> dict[str, Any]:
        """A change-notification item about ``object_id`` (a user or a group, by this subscription's kind)."""
        resource = f"{'Users' if self.kind == 'users' else 'Groups'}/{object_id}"
        data: dict[str, Any] = {
            "@odata.type": "#Microsoft.Graph.User" if self.kind == "users" else "#Microsoft.Graph.Group",
            "@odata.id": resource,
            "id": object_id,
            "organizationId": tenant_id,
        }
        data.update(resource_data)
        return {
            "subscriptionId": self.id,
            "clientState": self.client_state,
            "changeType": change_type,
            "resource": resource,
            "resourceData": data,
            "subscriptionExpirationDateTime": to_iso(self.expires_at),
            "tenantId": tenant_id,
        }

    def lifecycle(self, tenant_id: str, event: str) -> dict[str, Any]:
        """A lifecycle-notification item."""
        return {
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": to_iso(self.expires_at),
            "tenantId": tenant_id,
            "clientState": self.client_state,
            "lifecycleEvent": event,
        }


def _url(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name} is required.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(f"{name} must be an absolute http(s) URL.")
    return value


class SubscriptionRegistry:
    """The subscriptions of the one application the simulator serves."""

    def __init__(self, clock: Callable[[], float], application_id: str, creator_id: str) -> None:
        self.clock = clock
        self.application_id = application_id
        self.creator_id = creator_id
        self.quota = 100
        self.lifetime_cap: timedelta | None = None
        self._live: dict[str, Subscription] = {}
        self._pending: dict[str, Subscription] = {}

    def live(self) -> dict[str, Subscription]:
        """The subscriptions that have not expired, by id."""
        now = self.clock()
        for sub_id in [s.id for s in self._live.values() if s.expires_at <= now]:
            del self._live[sub_id]
        return self._live

    def effective_expiration(self, requested: float) -> float:
        """The expiration Graph grants for a requested one."""
        now = self.clock()
        granted = min(max(requested, now + MIN_LIFETIME), now + MAX_LIFETIME)
        if self.lifetime_cap is not None:
            granted = min(granted, now + self.lifetime_cap.total_seconds())
        return granted

    def _expiration(self, body: dict[str, Any]) -> float:
        raw = body.get("expirationDateTime")
        if not isinstance(raw, str) or not raw:
            raise _invalid("expirationDateTime is required.")
        try:
            return self.effective_expiration(parse_iso(raw))
        except ValueError:
            raise _invalid(
                f"expirationDateTime '{raw}' is not a valid ISO 8601 date-time with a timezone offset."
            ) from None

    def prepare(self, body: Any) -> Subscription:
        """Validate a create request and reserve it (quota and conflicts count it) until commit or release."""
        if not isinstance(body, dict):
            raise GraphHTTPError(400, "BadRequest", "Empty Payload. JSON content expected.")
        raw_resource = body.get("resource")
        if not isinstance(raw_resource, str):
            raise _invalid("resource is required.")
        match = _RESOURCE.match(raw_resource.strip().strip("/"))
        if match is None:
            raise _invalid(
                f"Resource '{raw_resource}' is not supported "
                "(users, users/{id}, groups, groups/{id}, groups/{id}/members)."
            )
        kind: ResourceKind = "users" if match.group(1).lower() == "users" else "groups"
        object_id = match.group(2).lower() if match.group(2) else None
        members_only = match.group(3) is not None
        if members_only and kind == "users":
            raise _invalid(f"Resource '{raw_resource}' is not supported.")
        raw_types = body.get("changeType")
        if not isinstance(raw_types, str) or not raw_types.strip():
            raise _invalid("changeType is required.")
        types = [t.strip() for t in raw_types.split(",") if t.strip()]
        for change_type in types:
            if change_type not in CHANGE_TYPES:
                raise _invalid(f"'{change_type}' is not a valid changeType.")
            if change_type == "created":
                raise _invalid(f"changeType 'created' is not supported for resource '{raw_resource}': use updated, deleted.")
        notification_url = _url(body, "notificationUrl", required=True)
        assert notification_url is not None
        lifecycle_url = _url(body, "lifecycleNotificationUrl", required=False)
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
            raise _invalid(f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
        if body.get("includeResourceData"):
            raise _invalid(f"includeResourceData is not supported for resource '{raw_resource}'.")
        sub = Subscription(
            id=str(uuid.uuid4()),
            resource=raw_resource,
            kind=kind,
            object_id=object_id,
            members_only=members_only,
            change_type=",".join(types),
            change_types=frozenset(types),
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=self._expiration(body),
            application_id=self.application_id,
            creator_id=self.creator_id,
        )
        taken = [*self.live().values(), *self._pending.values()]
        if len(taken) >= self.quota:
            raise GraphHTTPError(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; "
                f"Reason: subscription quota of {self.quota} per app reached]",
            )
        if any(other.key == sub.key for other in taken):
            raise GraphHTTPError(
                409,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Conflict; Reason: a subscription for this resource "
                "and changeType exists already]",
            )
        self._pending[sub.id] = sub
        return sub

    def commit(self, sub: Subscription) -> None:
        """The handshake succeeded: the subscription is live."""
        self._pending.pop(sub.id, None)
        self._live[sub.id] = sub

    def release(self, sub: Subscription) -> None:
        """The handshake failed: forget the reservation."""
        self._pending.pop(sub.id, None)

    def get(self, sub_id: str) -> Subscription:
        """A live subscription; 404 when unknown, removed or expired."""
        sub = self.live().get(sub_id)
        if sub is None:
            raise GraphHTTPError(404, "ResourceNotFound", f"The object was not found: subscription '{sub_id}'.")
        return sub

    def renew(self, sub_id: str, body: Any) -> Subscription:
        """Apply a PATCH: a new expiration (and optionally clientState)."""
        sub = self.get(sub_id)
        if not isinstance(body, dict):
            raise GraphHTTPError(400, "BadRequest", "Empty Payload. JSON content expected.")
        if "lifecycleNotificationUrl" in body:
            raise _invalid("lifecycleNotificationUrl cannot be added or changed by PATCH; create the subscription again.")
        unsupported = set(body) - {"expirationDateTime", "clientState"}
        if unsupported:
            raise _invalid(f"The simulator cannot PATCH {sorted(unsupported)}.")
        expires_at = self._expiration(body)
        if "clientState" in body:
            state = body["clientState"]
            if state is not None and (not isinstance(state, str) or len(state) > MAX_CLIENT_STATE):
                raise _invalid(f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
            sub.client_state = state
        sub.expires_at = expires_at
        return sub

    def remove(self, sub_id: str) -> Subscription | None:
        """Forget a subscription; returns it, or None when it was not live."""
        self.live()
        return self._live.pop(sub_id, None)

    def for_user(self, user_id: str, change_type: str) -> list[Subscription]:
        """Live subscriptions to notify about a change of a user."""
        return [
            s
            for s in self.live().values()
            if s.kind == "users" and s.object_id in (None, user_id) and change_type in s.change_types
        ]

    def for_group(self, group_id: str, change_type: str, *, membership: bool) -> list[Subscription]:
        """Live subscriptions to notify about a group change (a membership change when ``membership``)."""
        return [
            s
            for s in self.live().values()
            if s.kind == "groups"
            and s.object_id in (None, group_id)
            and change_type in s.change_types
            and (membership or not s.members_only or change_type == "deleted")
        ]
