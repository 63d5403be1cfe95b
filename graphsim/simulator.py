"""The simulated tenant as one object: directory mutations, Graph knobs, notification fan-out.

Mutations are synchronous; call them from the event-loop thread. Each records delta changes and
queues change notifications for the live subscriptions it concerns (sent once the simulator runs,
see :func:`graphsim.server.running_simulator`).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from graphsim.delivery import Delivery
from graphsim.delta import DeltaLinks, member_delta
from graphsim.faults import Faults
from graphsim.properties import render_group, render_user, user_select
from graphsim.seed import group_fields, user_fields
from graphsim.subscriptions import LIFECYCLE_EVENTS, Subscription, SubscriptionRegistry
from graphsim.tenant import Change, Tenant

DEFAULT_APPLICATION_ID = "00000000-0000-0000-0000-00000000a991"


class GraphSimulator:
    """A Microsoft Graph tenant in memory, served over HTTP by :func:`running_simulator`.

    ``token`` is the bearer token every ``/v1.0`` request must carry (None: no check). ``clock`` gives
    epoch seconds; subscription expirations and delta-token ages follow it, so tests can jump ahead.
    """

    def __init__(
        self,
        tenant_id: str | None = None,
        token: str | None = "sim-token",
        clock: Callable[[], float] = time.time,
        application_id: str = DEFAULT_APPLICATION_ID,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.token = token
        self.clock = clock
        self.application_id = application_id
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        """Graph requests per operation (``get_user``, ``users_delta``, ``create_subscription`` ...)."""
        self.handshake_timeout = 10.0
        """Seconds a subscriber has to answer the validation handshake."""
        self.delta_page_size = 100
        """Objects per delta page unless the request asks ``Prefer: odata.maxpagesize=N``."""
        self.tenant = Tenant(clock)
        self.tenant.listeners.append(self._fan_out)
        self.delta = DeltaLinks(self.tenant, clock)
        self.registry = SubscriptionRegistry(clock, application_id, creator_id=application_id)
        self.delivery = Delivery(self.faults)

    # -- directory ---------------------------------------------------------------------------

    def add_user(self, *, user_principal_name: str, id: str | None = None, **fields: Any) -> str:
        """Create a user; returns its id. Fields: display_name, given_name, surname, mail, account_enabled,
        employee_org_data ``{"costCenter", "division"}``, extension_attributes ``{1: "v"}``,
        extensions ``{"extension_<32hex>_<name>": v}``, user_type (``"Member"``/``"Guest"``),
        on_premises_sync_enabled."""
        return self.tenant.add_user(user_principal_name=user_principal_name, id=id, **fields)

    def update_user(self, user_id: str, **changes: Any) -> None:
        """Change a user. ``employee_org_data`` is replaced whole; ``extension_attributes`` and ``extensions``
        are merged (a None value clears one)."""
        self.tenant.update_user(user_id, **changes)

    def soft_delete_user(self, user_id: str) -> None:
        """Move a user to the recycle bin (its memberships are hidden until a restore)."""
        self.tenant.soft_delete_user(user_id)

    def restore_user(self, user_id: str) -> None:
        """Restore a soft-deleted user with its memberships."""
        self.tenant.restore_user(user_id)

    def hard_delete_user(self, user_id: str) -> None:
        """Delete a user (present or soft-deleted) for good."""
        self.tenant.hard_delete_user(user_id)

    def add_group(self, *, display_name: str, security_enabled: bool = True, id: str | None = None, **fields: Any) -> str:
        """Create a group; returns its id."""
        return self.tenant.add_group(display_name=display_name, security_enabled=security_enabled, id=id, **fields)

    def update_group(self, group_id: str, **changes: Any) -> None:
        """Change a group (display_name, security_enabled, description)."""
        self.tenant.update_group(group_id, **changes)

    def delete_group(self, group_id: str) -> None:
        """Delete a group for good (delta reports ``@removed`` reason ``deleted``)."""
        self.tenant.delete_group(group_id)

    def add_member(self, group_id: str, member_id: str) -> None:
        """Make a user or a group a direct member of a group (no-op when it is one)."""
        self.tenant.add_member(group_id, member_id)

    def remove_member(self, group_id: str, member_id: str) -> None:
        """Remove a direct member, a user or a group (no-op when it is none)."""
        self.tenant.remove_member(group_id, member_id)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """The user as ``GET /users/{id}`` with every modelled property would show it; None when not readable."""
        user = self.tenant.find_user(user_id)
        if user is None:
            return None
        select = user_select(
            ["userPrincipalName", "displayName", "givenName", "surname", "mail", "accountEnabled",
             "employeeOrgData", "onPremisesExtensionAttributes", "userType", "onPremisesSyncEnabled", *user.extensions]
        )
        return render_user(user, select)

    def get_group(self, group_id: str) -> dict[str, Any] | None:
        """The group as ``GET /groups/{id}`` shows it; None when unknown."""
        group = self.tenant.groups.get(group_id.lower())
        return None if group is None else render_group(group, ("displayName", "securityEnabled"))

    def members(self, group_id: str) -> list[str]:
        """Ids of the group's visible direct user members."""
        return self.tenant.visible_members(group_id)

    def member_groups(self, group_id: str) -> list[str]:
        """Ids of the groups nested directly in the group."""
        return self.tenant.member_groups(group_id)

    def transitive_users(self, group_id: str) -> list[str]:
        """Ids of the visible users that are members of the group at any depth, each once."""
        return self.tenant.transitive_members(group_id)[0]

    # -- knobs ---------------------------------------------------------------------------------

    def throttle(self, count: int = 1, retry_after: float | None = 1, path_prefix: str | None = None) -> None:
        """The next ``count`` Graph requests under ``path_prefix`` (e.g. ``/v1.0/groups/delta``) answer 429."""
        self.faults.inject(count, 429, retry_after, path_prefix)

    def fail(self, count: int = 1, status: int = 503, retry_after: float | None = None, path_prefix: str | None = None) -> None:
        """The next ``count`` Graph requests under ``path_prefix`` answer ``status`` (e.g. 500, 503)."""
        self.faults.inject(count, status, retry_after, path_prefix)

    def expire_delta_tokens(self) -> None:
        """Every delta and next link issued so far answers 410 Gone (``syncStateNotFound``)."""
        self.delta.expire_all()

    @property
    def delta_token_lifetime(self) -> timedelta:
        """How long a delta link stays valid (7 days, by the injected clock)."""
        return timedelta(seconds=self.delta.token_lifetime)

    @delta_token_lifetime.setter
    def delta_token_lifetime(self, value: timedelta) -> None:
        self.delta.token_lifetime = value.total_seconds()

    @property
    def subscription_lifetime_cap(self) -> timedelta | None:
        """Granted expiration = min(requested, now + cap) (after Graph's 45 min .. 41,760 min clamp)."""
        return self.registry.lifetime_cap

    @subscription_lifetime_cap.setter
    def subscription_lifetime_cap(self, value: timedelta | None) -> None:
        self.registry.lifetime_cap = value

    @property
    def subscription_quota(self) -> int:
        """Subscriptions this app may hold; beyond it ``POST /subscriptions`` answers 403."""
        return self.registry.quota

    @subscription_quota.setter
    def subscription_quota(self, value: int) -> None:
        self.registry.quota = value

    # -- subscriptions and notifications ------------------------------------------------------

    @property
    def subscriptions(self) -> dict[str, dict[str, Any]]:
        """Live subscriptions by id, as Graph returns them (clientState included)."""
        return {sub_id: sub.as_graph() for sub_id, sub in self.registry.live().items()}

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Change-notification items POSTed and answered 2xx, in delivery order."""
        return self.delivery.delivered

    @property
    def lifecycle_delivered(self) -> list[dict[str, Any]]:
        """Lifecycle-notification items POSTed and answered 2xx."""
        return self.delivery.lifecycle_delivered

    def remove_subscription(self, sub_id: str, notify: bool = True) -> None:
        """Graph forgets the subscription (renewals answer 404); with ``notify`` a lifecycle
        ``subscriptionRemoved`` goes to its lifecycle URL, if it has one."""
        sub = self.registry.remove(sub_id)
        if sub is None:
            raise KeyError(f"no subscription {sub_id}")
        if notify and sub.lifecycle_url:
            self.delivery.enqueue_lifecycle(sub.lifecycle_url, sub.lifecycle(self.tenant_id, "subscriptionRemoved"))

    async def send_lifecycle(self, sub_id: str, event: str) -> bool:
        """Send a lifecycle event to the subscription's lifecycle URL (retried like any notification);
        returns whether it was delivered. ``subscriptionRemoved`` also removes the subscription."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}")
        sub = self.registry.live().get(sub_id)
        if sub is None:
            raise KeyError(f"no subscription {sub_id}")
        if not sub.lifecycle_url:
            raise ValueError(f"subscription {sub_id} has no lifecycleNotificationUrl")
        if event == "subscriptionRemoved":
            self.registry.remove(sub_id)
        outcome = self.delivery.enqueue_lifecycle(sub.lifecycle_url, sub.lifecycle(self.tenant_id, event))
        return await outcome if outcome is not None else False

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return once no notification is queued or in flight; ``TimeoutError`` after ``timeout`` seconds."""
        await self.delivery.wait_idle(timeout)

    def _fan_out(self, change: Change) -> None:
        if change.kind == "user":
            change_type = "deleted" if change.deleted else "updated"
            for sub in self.registry.for_user(change.object_id, change_type):
                self._queue(sub, sub.notification(self.tenant_id, change.object_id, change_type))
        elif change.kind == "group":
            change_type = "deleted" if change.deleted else "updated"
            for sub in self.registry.for_group(change.object_id, change_type, membership=False):
                self._queue(sub, sub.notification(self.tenant_id, change.object_id, change_type))
        else:
            member = member_delta(change.member_id, change.added, change.member_kind)
            for sub in self.registry.for_group(change.object_id, "updated", membership=True):
                item = sub.notification(self.tenant_id, change.object_id, "updated", **{"members@delta": [member]})
                self._queue(sub, item)

    def _queue(self, sub: Subscription, item: dict[str, Any]) -> None:
        self.delivery.enqueue(sub.notification_url, item)

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the notification sender (done by :func:`running_simulator`)."""
        await self.delivery.start()

    async def stop(self) -> None:
        """Stop the notification sender and close its HTTP session."""
        await self.delivery.stop()

    def load_seed(self, document: Mapping[str, Any]) -> None:
        """Create the document's users, then its groups, then their members (users and nested groups,
        so a group may name one listed after it). The fields are read by :mod:`graphsim.seed`."""
        for user in document.get("users", []):
            self.add_user(**user_fields(user))
        created = [(self.add_group(**group_fields(group)), group) for group in document.get("groups", [])]
        for group_id, group in created:
            for member in group.get("members", []):
                self.add_member(group_id, member if isinstance(member, str) else member["id"])

    def __repr__(self) -> str:
        return (
            f"GraphSimulator(tenant_id={self.tenant_id!r}, users={len(self.tenant.users)}, "
            f"groups={len(self.tenant.groups)}, subscriptions={len(self.registry.live())})"
        )


__all__ = ["GraphSimulator"]
