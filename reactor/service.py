"""The running service: store, intake, dispatcher and the background jobs, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reactor import log
from reactor.client_states import ClientStates
from reactor.config import Settings
from reactor.coordination import Component as Component
from reactor.coordination import Coordinator
from reactor.dispatcher import Dispatcher
from reactor.domain.work import Handler
from reactor.intake import Intake
from reactor.metrics import DEAD_LETTERS, READINESS_CHECK, READY, REGISTRY
from reactor.store.base import JournalEntry, JournalItem, Store

Check = Callable[[], Awaitable[tuple[bool, str]]]


StatusSource = Callable[[], Awaitable[Any]]
Explain = Callable[[str], Awaitable[dict[str, Any] | None]]
"""The ``reactor explain --json`` report on the person a query names (None: nobody)."""


class Service:
    """Everything ``reactor serve`` runs, given at construction (``reactor.wiring.build_service``
    assembles the real one):

    - ``handler`` receives the dispatcher's units of work;
    - ``components`` are started after the dispatcher, in order, and stopped together;
    - ``closers`` run after every component stopped (remote clients), in reverse order;
    - ``checks`` are readiness checks added to the built-in ``store``, ``workers``, ``backlog`` and
      ``dead_letters`` (see :meth:`readiness`);
    - ``status_sources`` add sections to :meth:`status` (name → coroutine giving the section);
    - ``on_scrape`` run before each ``/metrics`` exposition (gauges that describe "now");
    - ``leader_components`` run only while this replica leads (renewal, periodic reconcile, pruning:
      see :mod:`reactor.coordination`), ``while_following`` at each heartbeat while another leads;
    - ``explain`` gives the admin listener's ``/explain`` view (``reactor explain``'s report).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        handler: Handler,
        *,
        components: Sequence[Component] = (),
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        checks: Mapping[str, Check] | None = None,
        status_sources: Mapping[str, StatusSource] | None = None,
        on_scrape: Sequence[Callable[[], Awaitable[None]]] = (),
        leader_components: Sequence[Component] = (),
        while_following: Sequence[Callable[[], Awaitable[None]]] = (),
        explain: Explain | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client_states = ClientStates(store)
        self.coordinator = Coordinator(
            store, settings.store.lease_seconds, submit=lambda entries: self.dispatcher.submit(entries),
            leader_components=leader_components, while_following=while_following,
        )
        self.dispatcher = Dispatcher(
            store, handler, workers=settings.sync.workers, max_attempts=settings.sync.max_attempts,
            gate=self.coordinator,
        )
        self.intake = Intake(
            store, self.client_states, settings.graph.tenant_id, settings.server.max_body_bytes, self.dispatcher.submit,
            max_items=settings.server.max_items_per_request,
        )
        self.components = tuple(components)
        self.closers = tuple(closers)
        self.checks: dict[str, Check] = {
            "store": self._check_store,
            "workers": self._check_workers,
            "backlog": self._check_backlog,
            "dead_letters": self._check_dead_letters,
            "replicas": self._check_replicas,
            **(checks or {}),
        }
        self.status_sources = dict(status_sources or {})
        self.on_scrape = tuple(on_scrape)
        self.explain = explain
        self.max_backlog_age_seconds = 300.0
        self.started_at = 0.0
        self._started = False

    async def enqueue(self, items: Sequence[JournalItem]) -> None:
        """Journal follow-up work durably and hand it to the dispatcher."""
        if not items:
            return
        seqs = await self.store.append(items)
        self.dispatcher.submit(
            [
                JournalEntry(
                    seq=s, kind=i.kind, object_id=i.object_id, received_at=i.received_at, payload=i.payload,
                    subscription_id=i.subscription_id, change_type=i.change_type,
                )
                for s, i in zip(seqs, items, strict=True)
            ]
        )

    async def start(self) -> None:
        if self._started:
            return
        await self.store.open()
        await self.client_states.refresh()
        await self.dispatcher.start()
        await self.coordinator.start()
        for c in self.components:
            await c.start()
        self._started = True
        self.started_at = time.time()
        log.event("service_started", workers=self.settings.sync.workers, pending=self.dispatcher.depth)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        log.event("service_stopping", in_flight=self.dispatcher.running, pending=self.dispatcher.depth)

        async def stop_component(c: Component) -> None:
            try:
                await c.stop()
            except Exception as exc:
                log.event("component_stop_failed", level="error", component=type(c).__name__, error=repr(exc))

        # All at once, each bounded (see Dispatcher.stop): the whole stop takes a few seconds even
        # when Graph or AskCody hang, well inside an orchestrator's grace period.
        await asyncio.gather(
            *(stop_component(c) for c in (*reversed(self.components), self.coordinator)), self.dispatcher.stop()
        )
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as exc:
                log.event("close_failed", level="error", error=repr(exc))
        await self.coordinator.leave()
        await self.store.close()
        log.event("service_stopped")

    # readiness -----------------------------------------------------------------------------------
    FATAL_CHECKS: frozenset[str] = frozenset({"store", "workers", "askcody"})
    """The checks whose failure makes ``/readyz`` answer 503; every other check is reported only."""

    REMOTE_CHECK_TTL: dict[str, float] = {"askcody": 5.0, "graph": 5.0}
    """Checks that call a remote service, and for how many seconds their last result is reused."""

    async def _check_store(self) -> tuple[bool, str]:
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
        except Exception as exc:
            return False, f"store unavailable: {exc}"
        return True, "ok"

    async def _check_workers(self) -> tuple[bool, str]:
        if not self.dispatcher.alive:
            return False, "workers are not running"
        return True, f"{self.dispatcher.workers} workers"

    async def _check_backlog(self) -> tuple[bool, str]:
        oldest = self.dispatcher.oldest_pending()
        depth = self.dispatcher.depth
        if oldest is None:
            return True, "empty"
        age = time.time() - oldest
        if age > self.max_backlog_age_seconds:
            return False, f"{depth} objects pending, oldest {age:.0f} s old (limit {self.max_backlog_age_seconds:.0f} s)"
        return True, f"{depth} objects pending, oldest {age:.1f} s old"

    async def _check_dead_letters(self) -> tuple[bool, str]:
        n = len(await self.store.dead_letters())
        DEAD_LETTERS.set(n)
        return n == 0, "none" if n == 0 else f"{n} dead letters waiting (reactor deadletters list)"

    async def _check_replicas(self) -> tuple[bool, str]:
        view = await self.coordinator.view()
        if not view.shared:
            return True, "single node (SQLite): this replica leads"
        who = "this replica" if view.leading else (view.leader.holder if view.leader else None)
        alive = f"{len(view.alive)} replica{'s' if len(view.alive) != 1 else ''} alive"
        if who is None:
            return False, f"no replica leads at the moment; {alive}"
        claims = "; this replica is alone and holds every object" if self.coordinator.alone else ""
        return True, f"leader: {who} (epoch {view.leader.epoch if view.leader else '?'}); {alive}{claims}"

    async def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Run every named check; ready when none of the :attr:`FATAL_CHECKS` fails.

        Each check answers ``{"ok", "reason", "fatal"}``. Fatal (503 while failing):

        - ``store``: the journal answers; without it no notification can be accepted.
        - ``workers``: the dispatcher's workers run; without them nothing is applied.
        - ``askcody``: AskCody's SCIM endpoint answers an authenticated filter query.

        Reported, not fatal (``ok: false`` with a reason, ``/readyz`` stays 200):

        - ``subscriptions`` (none live, or one about to expire), ``graph`` (Graph unreachable or the
          last reconcile failed) and ``backlog`` (the oldest pending change is older than
          ``max_backlog_age_seconds``): on Azure Container Apps readiness gates traffic, so a 503
          would also turn away Graph's notifications, and Graph's validation request when a
          subscription is created, which is how these recover. The intake must keep journaling.
        - ``dead_letters``: a dead letter needs a person, but the service still works.
        - ``replicas``: which replica leads and how many are alive (fails only while none leads).

        AskCody is fatal although the same argument applies: operators asked for a replica that
        cannot write to AskCody to be taken out of rotation. Graph retries refused deliveries for
        hours and the periodic reconcile repairs what is lost.

        Remote checks (:attr:`REMOTE_CHECK_TTL`) reuse their last result for a few seconds, so probes,
        the status page and people refreshing it do not hammer AskCody or Graph.
        """
        names = list(self.checks)
        results = await asyncio.gather(*(self._run_cached(n) for n in names))
        checks: dict[str, dict[str, Any]] = {}
        for name, (ok, reason) in zip(names, results, strict=True):
            fatal = name in self.FATAL_CHECKS
            checks[name] = {"ok": ok, "reason": reason, "fatal": fatal}
            READINESS_CHECK.labels(name, "true" if fatal else "false").set(1 if ok else 0)
        ready = all(c["ok"] for c in checks.values() if c["fatal"])
        READY.set(1 if ready else 0)
        return ready, checks

    @functools.cached_property
    def _remote_results(self) -> dict[str, tuple[float, tuple[bool, str]]]:
        return {}

    @functools.cached_property
    def _remote_locks(self) -> dict[str, asyncio.Lock]:
        return {}

    async def _run_cached(self, name: str) -> tuple[bool, str]:
        ttl = self.REMOTE_CHECK_TTL.get(name)
        if not ttl:
            return await self._run_check(self.checks[name])
        async with self._remote_locks.setdefault(name, asyncio.Lock()):
            cached = self._remote_results.get(name)
            if cached is not None and time.monotonic() - cached[0] < ttl:
                return cached[1]
            result = await self._run_check(self.checks[name])
            self._remote_results[name] = (time.monotonic(), result)
            return result

    async def _run_check(self, check: Check) -> tuple[bool, str]:
        try:
            return await asyncio.wait_for(check(), 5.0)
        except TimeoutError:
            return False, "check timed out after 5 s"
        except Exception as exc:
            return False, f"check failed: {exc!r}"

    # metrics and status --------------------------------------------------------------------------
    async def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition; gauges that describe "now" are computed at scrape time."""
        self.intake.publish()
        self.dispatcher.publish_gauges()
        with contextlib.suppress(Exception):
            DEAD_LETTERS.set(len(await self.store.dead_letters()))
        for hook in self.on_scrape:
            with contextlib.suppress(Exception):
                await hook()
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

    async def status(self) -> dict[str, Any]:
        now = time.time()
        count, oldest = await self.store.backlog()
        pending_since = self.dispatcher.oldest_pending()
        out: dict[str, Any] = {
            "now": now,
            "started_at": self.started_at,
            "backlog": {
                "objects": self.dispatcher.depth,
                "journal_items": count,
                "journal_items_done": self.dispatcher.done_waiting,  # done, deleted once those below are
                "oldest_received_at": oldest,
                "oldest_pending_age_seconds": round(now - pending_since, 1) if pending_since is not None else None,
                "max_age_seconds": self.max_backlog_age_seconds,
            },
            "subscriptions": [
                {"id": r.id, "resource": r.resource, "expires_at": r.expires_at,
                 "expires_in_seconds": round(r.expires_at - now)}
                for r in await self.store.subscriptions()
                if not r.pending
            ],
            "recent_changes": [c.__dict__ for c in await self.store.recent_changes(30)],
            "dead_letters": [
                {"id": d.id, "kind": d.kind, "object_id": d.object_id, "error": d.error, "created_at": d.created_at,
                 "attempts": len(d.attempts)}
                for d in await self.store.dead_letters()
            ],
            "failures": self.dispatcher.failures,
            "units_handled": self.dispatcher.units_handled,
        }
        with contextlib.suppress(Exception):
            out["replicas"] = (await self.coordinator.view()).as_dict()
        for name, source in self.status_sources.items():
            with contextlib.suppress(Exception):
                out[name] = await source()
        return out

    async def status_html(self) -> str:
        from reactor.statuspage import render

        ready, checks = await self.readiness()
        return render(await self.status(), ready, checks)


