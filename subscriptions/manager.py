"""The life of our Graph subscriptions: create or adopt, renew, reauthorize, recreate, delete.

We own exactly two subscriptions, ``users`` and ``groups``, whatever the number of groups in scope:
the quota for users and groups is 100 subscriptions per app and tenant, and one ``groups/{id}`` per
group would hit it with a hundred groups in scope (and cost a create and renewals per group).
Notifications about groups out of scope are cheap to drop in the intake and engine.

Records live in the store (:class:`~reactor.store.base.SubscriptionRecord`), so they survive a
restart and the intake can check each notification's ``clientState`` against them. A subscription
found on Graph for our ``notificationUrl`` and resource but not in our store (a lost store, a crash
between create and save) is adopted by deleting it and creating it again: its ``clientState`` is not
ours (we cannot know how strong it is, Graph need not return it, and PATCH cannot be relied on to
change it), and the intake would drop every notification it carries. Whenever changes may have
been missed (a subscription gone, recreated or adopted, a ``missed`` lifecycle event) ``on_gap`` is
called with the reason, so the owner runs a reconcile.

Failures never escape :meth:`SubscriptionManager.ensure` or :meth:`SubscriptionManager.tick`: the
reason is kept per resource (see :meth:`SubscriptionManager.status`) and the attempt is repeated
with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reactor import log
from reactor.backoff import Backoff
from reactor.config import Settings
from reactor.errors import ConflictError, NotFoundError, PermanentError, ReactorError, TransientError
from reactor.graph.client import GraphClient
from reactor.store.base import PENDING_PREFIX, Fence, SubscriptionRecord, Subscriptions
from reactor.times import parse_iso, to_iso
from subscriptions.graph_api import SubscriptionsApi
from subscriptions.policy import CHANGE_TYPE, RESOURCES, RETRY_BACKOFF, RenewalPolicy
from subscriptions.status import ResourceStatus, SubscriptionsStatus

PENDING_TTL_SECONDS = 600.0
"""A pending record (a create in progress) older than this is left over from a crash and removed."""

OnGap = Callable[[str], Awaitable[None]]


def new_client_state() -> str:
    """A random clientState: 32 random bytes (256 bits), 43 URL-safe characters (Graph allows 128)."""
    return secrets.token_urlsafe(32)


@dataclass
class _Health:
    failures: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    last_verified_at: float = 0.0
    gap_reason: str = ""
    """Why changes may have been missed; reported through ``on_gap`` once a subscription is live again."""


@dataclass
class SubscriptionManager:
    """Owns the ``users`` and ``groups`` subscriptions of this reactor.

    Call :meth:`load` once (reads the store), then :meth:`ensure` at start; the renewal loop
    (:func:`subscriptions.renewal.run_renewal`) calls :meth:`tick`; the lifecycle handler calls
    :meth:`reauthorize`, :meth:`recreate` and :meth:`gap`. ``on_gap`` must not call back into the
    manager (it runs under the manager's lock): it should schedule a reconcile and return.
    """

    client: GraphClient
    store: Subscriptions
    settings: Settings
    clock: Callable[[], float] = time.time
    on_gap: OnGap | None = None
    backoff: Backoff = RETRY_BACKOFF
    verify_interval: float = 3600.0
    """How often a live subscription is read back from Graph (a silent removal is found then)."""
    expiry_warning: float = 600.0
    """A subscription this close to expiry makes :meth:`status` degraded."""
    client_state_factory: Callable[[], str] = new_client_state
    fence: Callable[[], Fence | None] = field(default=lambda: None)
    """The leader's current term (:mod:`reactor.coordination`): every write of a record carries it, and
    the store refuses it once another replica leads. ``None``: a single node or the CLI."""
    _records: dict[str, SubscriptionRecord] = field(default_factory=dict, init=False)
    _health: dict[str, _Health] = field(default_factory=dict, init=False)
    _stale: list[SubscriptionRecord] = field(default_factory=list, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self.api = SubscriptionsApi(self.client)
        self.policy = RenewalPolicy(self.settings.subscriptions)

    # configuration ----------------------------------------------------------------------------------
    @property
    def resources(self) -> tuple[str, ...]:
        """The resources we subscribe to (none when subscriptions are disabled)."""
        return RESOURCES if self.settings.subscriptions.enabled else ()

    @property
    def notification_url(self) -> str:
        return self.settings.server.notification_url

    @property
    def lifecycle_url(self) -> str:
        return self.settings.server.lifecycle_url

    def _requested_expiry(self) -> float:
        return self.policy.requested_expiry(self.clock())

    def _current(self, record: SubscriptionRecord) -> bool:
        return (
            record.notification_url == self.notification_url
            and record.lifecycle_url == self.lifecycle_url
            and record.change_type == CHANGE_TYPE
        )

    def health(self, resource: str) -> _Health:
        return self._health.setdefault(resource, _Health())

    # records ----------------------------------------------------------------------------------------
    async def load(self, *, readonly: bool = False) -> None:
        """Read our records from the store (no Graph call). Of two records for one resource the newest
        wins; the older one is deleted on Graph and in the store by the next :meth:`tick`.
        ``readonly``: a replica that does not lead refreshes what it shows, and cleans nothing up."""
        self._records.clear()
        self._stale.clear()
        for record in sorted(await self.store.subscriptions(), key=lambda r: max(r.created_at, r.last_renewed_at)):
            if record.pending:
                # Left by a create that did not finish (a crash between the POST and its answer): the
                # subscription, if Graph made it, is found and adopted by the next create.
                if not readonly and self.clock() - record.created_at > PENDING_TTL_SECONDS:
                    await self.store.delete_subscription(record.id, fence=self.fence())
                continue
            previous = self._records.get(record.resource)
            if previous is not None:
                self._stale.append(previous)
            self._records[record.resource] = record

    async def _drop_stale(self) -> None:
        for record in list(self._stale):
            try:
                await self._delete_remote(record.id)
                await self.store.delete_subscription(record.id, fence=self.fence())
            except ReactorError as exc:
                log.event("subscription_duplicate_kept", level="warning", subscription_id=record.id, error=str(exc))
            else:
                self._stale.remove(record)

    def record(self, resource: str) -> SubscriptionRecord | None:
        """Our record for ``resource``, if any."""
        return self._records.get(resource)

    def record_by_id(self, subscription_id: str) -> SubscriptionRecord | None:
        """Our record with this subscription id, if any."""
        for record in self._records.values():
            if record.id == subscription_id:
                return record
        return None

    async def _save(self, record: SubscriptionRecord) -> SubscriptionRecord:
        await self.store.save_subscription(record, fence=self.fence())
        self._records[record.resource] = record
        return record

    async def _forget(self, record: SubscriptionRecord) -> None:
        await self.store.delete_subscription(record.id, fence=self.fence())
        if self._records.get(record.resource) == record:
            del self._records[record.resource]

    async def gap(self, reason: str) -> None:
        """Changes may have been missed: tell the owner (it runs a reconcile)."""
        log.event("notification_gap", level="warning", reason=reason)
        if self.on_gap is not None:
            await self.on_gap(reason)

    # Graph ------------------------------------------------------------------------------------------
    async def _delete_remote(self, subscription_id: str) -> bool:
        return await self.api.delete(subscription_id)

    async def remote_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription of this app on Graph (all pages), ours and foreign."""
        return await self.api.list()

    def _ours_on_graph(self, remote: dict[str, Any], resource: str) -> bool:
        return (
            str(remote.get("resource", "")).strip("/").lower() == resource
            and remote.get("notificationUrl") == self.notification_url
        )

    def _record_from(self, remote: dict[str, Any], resource: str, client_state: str, now: float) -> SubscriptionRecord:
        raw = remote.get("expirationDateTime")
        return SubscriptionRecord(
            id=str(remote["id"]),
            resource=resource,
            change_type=CHANGE_TYPE,
            notification_url=self.notification_url,
            lifecycle_url=self.lifecycle_url,
            client_state=client_state,
            expires_at=parse_iso(raw) if isinstance(raw, str) else self._requested_expiry(),
            created_at=now,
        )

    async def _post(self, resource: str, client_state: str) -> dict[str, Any]:
        return await self.api.create(
            resource=resource, change_type=CHANGE_TYPE, notification_url=self.notification_url,
            lifecycle_url=self.lifecycle_url, expires=to_iso(self._requested_expiry()), client_state=client_state,
        )

    async def _adopt_existing(self, resource: str) -> bool:
        """Delete subscriptions on Graph for our URL and ``resource`` that are not in our store; True if any."""
        adopted = False
        for remote in await self.remote_subscriptions():
            if (
                self._ours_on_graph(remote, resource)
                and self.record_by_id(str(remote.get("id"))) is None
                and not any(r.id == remote.get("id") for r in self._stale)
            ):
                log.event("subscription_adopting", subscription_id=remote.get("id"), resource=resource)
                await self._delete_remote(str(remote["id"]))
                adopted = True
        return adopted

    async def _create(self, resource: str) -> SubscriptionRecord:
        """Create the subscription for ``resource``, adopting one of ours found on Graph; never duplicates."""
        if not self.settings.server.public_url:
            raise PermanentError("server.public_url is not set: Graph has nowhere to deliver notifications")
        adopted = await self._adopt_existing(resource)
        client_state = self.client_state_factory()
        now = self.clock()
        # Stored before the POST: Graph may deliver before its 201 reaches us (or before the record
        # below is written, or before another replica has read it), and the intake of every replica
        # accepts an item whose clientState is pending.
        pending = SubscriptionRecord(
            id=f"{PENDING_PREFIX}{resource}:{uuid.uuid4()}", resource=resource, change_type=CHANGE_TYPE,
            notification_url=self.notification_url, lifecycle_url=self.lifecycle_url, client_state=client_state,
            expires_at=now + PENDING_TTL_SECONDS, created_at=now,
        )
        await self.store.save_subscription(pending, fence=self.fence())
        try:
            return await self._create_with(resource, client_state, now, adopted)
        finally:
            await self.store.delete_subscription(pending.id, fence=self.fence())

    async def _create_with(self, resource: str, client_state: str, now: float, adopted: bool) -> SubscriptionRecord:
        try:
            created = await self._post(resource, client_state)
        except ConflictError:
            # Another instance created it between our listing and our POST, or the listing missed it.
            if not await self._adopt_existing(resource):
                raise PermanentError(
                    f"Graph has a subscription to {resource} for another notificationUrl (409); "
                    "delete it or use another app registration"
                ) from None
            adopted = True
            created = await self._post(resource, client_state)
        except TransientError:
            # The POST may have been applied before the failure: look before anyone tries again.
            for remote in await self.remote_subscriptions():
                if self._ours_on_graph(remote, resource) and remote.get("clientState") == client_state:
                    created = remote
                    break
            else:
                raise
        record = await self._save(self._record_from(created, resource, client_state, now))
        health = self.health(resource)
        health.last_verified_at = now
        log.event("subscription_created", resource=resource, subscription_id=record.id, expires_at=to_iso(record.expires_at))
        if adopted and not health.gap_reason:
            health.gap_reason = f"adopted the {resource} subscription by creating it again"
        if health.gap_reason:
            # Only now: a reconcile started before the new subscription is live could miss changes again.
            reason, health.gap_reason = health.gap_reason, ""
            await self.gap(f"{reason}; created {record.id}")
        return record

    async def _replace_gone(self, record: SubscriptionRecord, why: str) -> SubscriptionRecord:
        """Forget ``record`` and create the subscription again; the gap is reported once that succeeded
        (if creating fails, by the later attempt that succeeds)."""
        self.health(record.resource).gap_reason = f"{record.resource} subscription {record.id} {why}"
        await self._forget(record)
        return await self._create(record.resource)

    def renew_at(self, record: SubscriptionRecord) -> float:
        """When ``record`` becomes due (:meth:`RenewalPolicy.renew_at`)."""
        return self.policy.renew_at(record)

    async def _renew(self, record: SubscriptionRecord) -> SubscriptionRecord:
        now = self.clock()
        try:
            live = await self.api.renew(record.id, to_iso(self._requested_expiry()))
        except NotFoundError:
            return await self._replace_gone(record, "was gone at renewal (404)")
        raw = live.get("expirationDateTime")
        expires_at = parse_iso(raw) if isinstance(raw, str) else self._requested_expiry()
        self.health(record.resource).last_verified_at = now
        return await self._save(replace(record, expires_at=expires_at, last_renewed_at=now))

    async def _verify(self, record: SubscriptionRecord) -> SubscriptionRecord:
        """Read the subscription back from Graph; recreate it when it is gone."""
        now = self.clock()
        try:
            live = await self.api.get(record.id)
        except NotFoundError:
            return await self._replace_gone(record, "was gone (404)")
        self.health(record.resource).last_verified_at = now
        raw = live.get("expirationDateTime")
        if isinstance(raw, str) and parse_iso(raw) != record.expires_at:
            record = await self._save(replace(record, expires_at=parse_iso(raw)))
        return record

    async def _ensure_one(self, resource: str, *, force_renew: bool = False) -> SubscriptionRecord:
        record = self._records.get(resource)
        if record is not None and (not self._current(record) or record.expires_at <= self.clock()):
            # The configuration changed (URLs cannot be PATCHed) or it expired unrenewed: replace it.
            await self._delete_remote(record.id)
            return await self._replace_gone(record, "expired or no longer matches the configuration")
        if record is None:
            return await self._create(resource)
        if self.clock() - self.health(resource).last_verified_at >= self.verify_interval:
            record = await self._verify(record)
        if force_renew or self.clock() >= self.renew_at(record):
            record = await self._renew(record)
        return record

    async def _attempt(self, resource: str, *, force_renew: bool = False) -> None:
        health = self.health(resource)
        try:
            await self._ensure_one(resource, force_renew=force_renew)
        except ReactorError as exc:
            health.failures += 1
            health.last_error = str(exc)
            health.next_attempt_at = self.clock() + self.backoff.delay(health.failures)
            log.event(
                "subscription_attempt_failed", level="warning", resource=resource, error=str(exc), failures=health.failures
            )
        else:
            health.failures = 0
            health.last_error = ""
            health.next_attempt_at = 0.0

    # public operations ------------------------------------------------------------------------------
    async def ensure(self) -> SubscriptionsStatus:
        """Create, adopt or renew what is missing or due, now (no backoff wait); never raises for Graph errors."""
        async with self._lock:
            await self._drop_stale()
            for resource in self.resources:
                await self._attempt(resource)
        return self.status()

    async def renew_all(self) -> SubscriptionsStatus:
        """Renew every subscription now, due or not (creating missing ones)."""
        async with self._lock:
            await self._drop_stale()
            for resource in self.resources:
                await self._attempt(resource, force_renew=True)
        return self.status()

    async def tick(self) -> float:
        """One pass of the renewal loop: act on what is due; return seconds until the next pass is needed."""
        async with self._lock:
            await self._drop_stale()
            for resource in self.resources:
                if self.clock() >= self.health(resource).next_attempt_at:
                    await self._attempt(resource)
        return self.next_due() - self.clock()

    def next_due(self) -> float:
        """The earliest moment something needs doing (a renewal, a verification or a retry)."""
        moments: list[float] = []
        for resource in self.resources:
            health = self.health(resource)
            record = self._records.get(resource)
            if health.failures or record is None:
                moments.append(health.next_attempt_at)
            else:
                moments.append(min(self.renew_at(record), health.last_verified_at + self.verify_interval))
        return min(moments, default=self.clock() + self.verify_interval)

    async def reauthorize(self, subscription_id: str) -> str:
        """Answer ``reauthorizationRequired``: renew when due, else reauthorize; neither when the
        subscription was created, renewed or reauthorized within :data:`~subscriptions.policy.REAUTHORIZE_DEBOUNCE_SECONDS`.
        Returns what was done."""
        async with self._lock:
            record = self.record_by_id(subscription_id)
            if record is None:
                return "ignored: not our subscription"
            now = self.clock()
            since = self.policy.reauthorize_debounced(record, now)
            if since is not None:
                return f"skipped: created, renewed or reauthorized {since:.0f} s ago"
            if now >= self.renew_at(record):
                await self._renew(record)
                return "renewed"
            try:
                await self.api.reauthorize(record.id)
            except NotFoundError:
                await self._replace_gone(record, "was gone at reauthorization (404)")
                return "recreated"
            await self._save(replace(record, last_reauthorized_at=now))
            return "reauthorized"

    async def recreate(self, subscription_id: str, reason: str) -> str:
        """Answer ``subscriptionRemoved``: create the subscription again and report the gap."""
        async with self._lock:
            record = self.record_by_id(subscription_id)
            if record is None:
                return "ignored: not our subscription"
            try:
                await self._delete_remote(record.id)
                await self._replace_gone(record, reason)
            except ReactorError as exc:
                health = self.health(record.resource)
                health.failures += 1
                health.last_error = str(exc)
                health.next_attempt_at = self.clock() + self.backoff.delay(health.failures)
                return f"recreate failed (retried by the renewal loop): {exc}"
            return "recreated"

    async def delete_all(self) -> list[str]:
        """Delete our subscriptions (those in our store) on Graph and in the store; foreign ones stay."""
        async with self._lock:
            deleted: list[str] = []
            for record in await self.store.subscriptions():
                if not record.pending:
                    await self._delete_remote(record.id)
                await self.store.delete_subscription(record.id, fence=self.fence())
                self._records.pop(record.resource, None)
                deleted.append(record.id)
            return deleted

    def status(self) -> SubscriptionsStatus:
        """Per resource: subscription id, seconds to expiry and a degraded reason (no side effect:
        the caller publishes the gauges, :func:`subscriptions.status.publish`)."""
        now = self.clock()
        items: list[ResourceStatus] = []
        for resource in self.resources:
            record = self._records.get(resource)
            health = self.health(resource)
            reason = ""
            remaining: float | None = None
            if record is None:
                reason = f"no subscription: {health.last_error}" if health.last_error else "no subscription yet"
            else:
                remaining = record.expires_at - now
                if remaining <= 0:
                    reason = "expired" + (f": {health.last_error}" if health.last_error else "")
                elif remaining < self.expiry_warning:
                    reason = f"expires in {int(remaining)} s" + (f": {health.last_error}" if health.last_error else "")
            items.append(
                ResourceStatus(
                    resource=resource,
                    subscription_id=record.id if record else None,
                    expires_at=record.expires_at if record else None,
                    seconds_to_expiry=remaining,
                    degraded=reason or None,
                    last_error=health.last_error or None,
                    failures=health.failures,
                )
            )
        return SubscriptionsStatus(items)


__all__: Sequence[str] = (
    "CHANGE_TYPE", "RESOURCES", "RETRY_BACKOFF", "SubscriptionManager", "new_client_state",
)
