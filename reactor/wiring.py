"""Assembling the real service: Graph client and reader, AskCody client, sync engine, subscriptions,
the periodic reconcile, the audit pruning, and the readiness checks that go with them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reactor import log
from reactor.config import Settings
from reactor.dispatcher import STOP_GRACE_SECONDS
from reactor.domain.work import WorkUnit
from reactor.graph.client import GraphClient
from reactor.graph.reader import GraphReader
from reactor.ratelimit import TokenBucket
from reactor.retry import RetryPolicy
from reactor.scim.client import AskCodyClient
from reactor.service import Check, Component, Service, StatusSource
from reactor.store.base import Audit, JournalItem, Store
from reactor.sync.engine import SyncEngine
from reactor.sync.explain import explain
from reactor.sync.progress import APPLYING
from reactor.tasks import cancelled
from subscriptions.lifecycle import handle_lifecycle
from subscriptions.manager import SubscriptionManager
from subscriptions.renewal import run_renewal
from subscriptions.status import publish as publish_subscription_gauges


@dataclass
class Clients:
    """The remote clients of one process, closed together."""

    graph: GraphClient
    reader: GraphReader
    scim: AskCodyClient

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.scim.aclose()
        with contextlib.suppress(Exception):
            await self.graph.aclose()


def build_clients(settings: Settings, store: Store) -> Clients:
    policy = RetryPolicy(attempts=settings.sync.max_attempts, horizon=settings.sync.retry_horizon_seconds)
    graph = GraphClient(settings.graph, retry=policy)
    reader = GraphReader(graph, settings.attributes, settings.group_ids, store)
    scim = AskCodyClient(settings.askcody, TokenBucket(settings.askcody.max_requests_per_second), retry_policy=policy)
    return Clients(graph, reader, scim)


@dataclass
class ReconcileLoop:
    """Queues a reconcile at start and every ``sync.reconcile_interval_seconds`` (journaled, so it is
    serialised with other reconciles and survives a restart)."""

    enqueue: Callable[[Sequence[JournalItem]], Awaitable[None]]
    interval: float
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reactor-reconcile")

    async def stop(self) -> None:
        await cancelled(self._task)

    async def request(self, reason: str) -> None:
        await self.enqueue([JournalItem("reconcile", "all", time.time(), {"cause": reason}, change_type="reconcile")])

    async def _run(self) -> None:
        reason = "start-up reconcile"
        while True:
            try:
                await self.request(reason)
            except Exception as exc:
                log.event("reconcile_request_failed", level="error", error=repr(exc))
            await asyncio.sleep(self.interval)  # the period between reconciles, not a wait for work
            reason = "periodic reconcile"


DAY = 86_400.0


@dataclass
class AuditPruning:
    """Removes the audit rows older than ``store.audit_retention_days``: at start, then every ``interval``."""

    audit: Audit
    retention_days: int
    interval: float = DAY
    clock: Callable[[], float] = time.time
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        await self.prune()
        self._task = asyncio.create_task(self._run(), name="reactor-audit-pruning")

    async def stop(self) -> None:
        await cancelled(self._task)

    async def prune(self) -> int:
        """Remove the rows older than the retention now; how many were removed (0 when the store failed)."""
        try:
            removed = await self.audit.prune_audit(self.clock() - self.retention_days * DAY)
        except Exception as exc:
            log.event("audit_prune_failed", level="error", error=repr(exc))
            return 0
        if removed:
            log.event("audit_pruned", rows=removed, retention_days=self.retention_days)
        return removed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the period between prunings, not a wait for work
            await self.prune()


@dataclass
class SubscriptionsComponent:
    """Ensures the subscriptions at start and runs the renewal loop."""

    manager: SubscriptionManager
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        await self.manager.load()
        self._stop.clear()
        self._task = asyncio.create_task(run_renewal(self.manager, stop=self._stop), name="reactor-subscriptions")

    async def stop(self) -> None:
        """Let a create or renewal in progress finish (so that what Graph created is stored), for up to
        :data:`~reactor.dispatcher.STOP_GRACE_SECONDS`; then cancel (a retry against an unreachable
        Graph is not waited out)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, STOP_GRACE_SECONDS)  # cancels the task on timeout


class Assembled(NamedTuple):
    """The real service and the engine inside it (the demo and the tests look at the engine)."""

    service: Service
    engine: SyncEngine


def build_service(settings: Settings, store: Store, clients: Clients | None = None) -> Assembled:
    """The service ``reactor serve`` runs: sync engine as the handler, subscriptions (when enabled),
    the periodic reconcile, their readiness checks and status sections, all given at construction.
    Renewal, the periodic reconcile and the audit pruning run on the leading replica only."""
    clients = clients or build_clients(settings, store)
    # The engine, the reconcile loop and the lifecycle handler journal follow-up work through the
    # service, which needs the engine as its handler: they reach it through ``service`` below, bound
    # once it exists (before anything runs).
    service: Service

    async def enqueue(items: Sequence[JournalItem]) -> None:
        await service.enqueue(items)

    reconcile = ReconcileLoop(enqueue, settings.sync.reconcile_interval_seconds)
    components: list[Component] = []
    leader_components: list[Component] = []
    while_following: list[Callable[[], Awaitable[None]]] = []
    checks: dict[str, Check] = {}
    status_sources: dict[str, StatusSource] = {}
    on_scrape: list[Callable[[], Awaitable[None]]] = []
    on_lifecycle: Callable[[WorkUnit], Awaitable[None]] | None = None

    if settings.subscriptions.enabled:

        async def on_gap(reason: str) -> None:
            log.event("reconcile_requested", reason=reason)
            await reconcile.request(reason)

        manager = SubscriptionManager(
            clients.graph, store, settings, on_gap=on_gap, fence=lambda: service.coordinator.fence
        )
        leader_components.append(SubscriptionsComponent(manager))

        async def refresh_subscriptions() -> None:
            await manager.load(readonly=True)

        while_following.append(refresh_subscriptions)

        async def lifecycle(unit: WorkUnit) -> None:
            for entry in unit.entries:
                outcome = await handle_lifecycle(manager, entry.payload)
                log.event("lifecycle_handled", subscription_id=entry.object_id, event=entry.change_type, outcome=outcome)
            await service.client_states.refresh()

        async def check_subscriptions() -> tuple[bool, str]:
            status = manager.status()
            if status.ok:
                soonest = min((r.seconds_to_expiry for r in status.resources if r.seconds_to_expiry is not None), default=None)
                return True, "live" + (f", earliest expiry in {soonest / 3600:.1f} h" if soonest is not None else "")
            return False, status.reason or "subscriptions not live"

        async def subscription_status() -> Any:
            return manager.status().as_dict()

        async def publish_expiry() -> None:
            publish_subscription_gauges(manager.status())

        on_lifecycle = lifecycle
        checks["subscriptions"] = check_subscriptions
        status_sources["subscription_health"] = subscription_status
        on_scrape.append(publish_expiry)
    leader_components.append(reconcile)
    leader_components.append(AuditPruning(store, settings.store.audit_retention_days))

    engine = SyncEngine(settings, store, clients.reader, clients.scim, enqueue=enqueue, on_lifecycle=on_lifecycle)

    async def check_askcody() -> tuple[bool, str]:
        try:
            await clients.scim.ping()
        except Exception as exc:
            return False, f"AskCody SCIM not reachable: {type(exc).__name__}: {exc}"
        return True, "reachable"

    async def check_graph() -> tuple[bool, str]:
        if engine.last_reconcile_error:
            return False, f"last reconcile failed: {engine.last_reconcile_error}"
        try:
            first = settings.groups[0].id if settings.groups else None
            if first is not None:
                await clients.reader.get_group(first)
        except Exception as exc:
            return False, f"Graph not reachable: {type(exc).__name__}: {exc}"
        return True, "reachable"

    async def engine_status() -> dict[str, Any]:
        return {
            "last_reconcile_at": engine.last_reconcile_at,
            "last_reconcile_error": engine.last_reconcile_error,
            "attribute_failures": dict(engine.attribute_failures),
        }

    async def reconcile_progress() -> dict[str, Any]:
        progress = engine.progress
        if progress.phase == APPLYING and not service.dispatcher.depth and not service.dispatcher.running:
            # Nothing is waiting here: the users it still expects went to another replica (or to the
            # dead letters through the dispatcher), where they are not counted.
            progress.settled_elsewhere()
        return progress.as_dict()

    checks["askcody"] = check_askcody
    checks["graph"] = check_graph
    status_sources["engine"] = engine_status
    status_sources["reconcile"] = reconcile_progress
    service = Service(
        settings, store, engine.handle, components=components, closers=[clients.aclose], checks=checks,
        status_sources=status_sources, on_scrape=on_scrape, leader_components=leader_components,
        while_following=while_following, explain=functools.partial(explain, engine, store),
    )
    return Assembled(service, engine)
