"""The Service and its assembly, directly: everything it runs is given at construction, started in
order and stopped together; readiness, status and metrics include what was given."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reactor.config import GroupMapping, Secret, Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.service import Service
from reactor.statuspage import render
from reactor.store import JournalEntry, JournalItem, SQLiteStore
from reactor.sync.engine import SyncEngine
from reactor.sync.progress import READING_CHANGES, Progress
from reactor.wiring import AuditPruning, ReconcileLoop, SubscriptionsComponent, build_service
from tests.support.eventually import eventually

TENANT = "11111111-2222-3333-4444-555555555555"


class Part:
    def __init__(self, name: str, events: list[str], fail_stop: bool = False) -> None:
        self.name, self.events, self.fail_stop = name, events, fail_stop

    async def start(self) -> None:
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("stop failed")


async def test_given_parts_are_started_in_order_and_all_stopped_then_closed(tmp_path: Path) -> None:
    events: list[str] = []

    async def handler(unit: WorkUnit) -> None:
        events.append("handled")

    async def close() -> None:
        events.append("closed")

    async def fine() -> tuple[bool, str]:
        return True, "fine"

    async def broken() -> tuple[bool, str]:
        raise ValueError("boom")

    async def section() -> dict[str, int]:
        return {"answer": 42}

    async def scrape() -> None:
        events.append("scraped")

    settings = with_overrides(Settings(), graph={"tenant_id": TENANT}, store={"url": f"sqlite:///{tmp_path / 'r.db'}"})
    service = Service(
        settings, SQLiteStore(str(tmp_path / "r.db")), handler,
        components=[Part("a", events), Part("b", events, fail_stop=True)], closers=[close],
        checks={"extra": fine, "flaky": broken}, status_sources={"mine": section}, on_scrape=[scrape],
    )
    await service.start()
    assert events == ["start a", "start b"]
    ready, checks = await service.readiness()
    assert ready, checks
    assert checks["extra"] == {"ok": True, "reason": "fine", "fatal": False}
    assert checks["flaky"]["ok"] is False and "boom" in checks["flaky"]["reason"]
    assert {"store", "workers", "backlog", "dead_letters"} <= set(checks)
    assert (await service.status())["mine"] == {"answer": 42}
    body, _ = await service.metrics_text()
    assert b"reactor_queue_depth" in body and events[-1] == "scraped"
    await service.stop()
    # Both components are stopped although one failed to; the closers run after them.
    assert sorted(events[3:5]) == ["stop a", "stop b"] and events[5:] == ["closed"], events


def settings_for(tmp_path: Path, *, subscriptions: bool) -> Settings:
    return with_overrides(
        Settings(groups=(GroupMapping(id="99999999-0000-4000-8000-000000000001", askcody_group="Owners", grants="role"),)),
        graph={"tenant_id": TENANT, "base_url": "http://127.0.0.1:9/v1.0", "token": Secret("t")},
        askcody={"scim_url": "http://127.0.0.1:9/scim/v2", "token": Secret("a")},
        store={"url": f"sqlite:///{tmp_path / 'r.db'}"},
        server={"public_url": "https://reactor.example.com"},
        subscriptions={"enabled": subscriptions},
    )


async def test_build_service_assembles_subscriptions_only_when_enabled(tmp_path: Path) -> None:
    for enabled in (True, False):
        service, engine = build_service(settings_for(tmp_path, subscriptions=enabled), SQLiteStore(str(tmp_path / "r.db")))
        # Renewal, the periodic reconcile and the pruning are the leader's: they run on one replica.
        kinds = [type(c) for c in service.coordinator.leader_components]
        assert kinds == ([SubscriptionsComponent] if enabled else []) + [ReconcileLoop, AuditPruning]
        assert service.components == ()
        assert ("subscriptions" in service.checks) is enabled
        assert {"askcody", "graph", "store", "workers", "backlog", "dead_letters", "replicas"} <= set(service.checks)
        assert ("subscription_health" in service.status_sources) is enabled and "engine" in service.status_sources
        assert service.dispatcher.handler == engine.handle
        assert (engine.on_lifecycle is not None) is enabled
        for close in service.closers:
            await close()


async def test_a_unit_that_keeps_failing_is_dead_lettered_after_the_configured_attempts(tmp_path: Path) -> None:
    async def broken(unit: WorkUnit) -> None:
        raise ValueError("cannot parse this user")

    settings = with_overrides(
        Settings(), graph={"tenant_id": TENANT}, store={"url": f"sqlite:///{tmp_path / 'r.db'}"}, sync={"max_attempts": 2}
    )
    service = Service(settings, SQLiteStore(str(tmp_path / "r.db")), broken)
    await service.start()
    try:
        await service.enqueue([JournalItem("user", "5a0e0000-0000-4000-8000-000000000001", time.time(), {}, "s", "updated")])

        async def dead() -> bool:
            return len(await service.store.dead_letters()) == 1

        await eventually(dead, "the unit dead-lettered", timeout=20)
        (letter,) = await service.store.dead_letters()
        assert len(letter.attempts) == 2 and "cannot parse this user" in letter.error
    finally:
        await service.stop()


async def test_metrics_show_the_unit_in_flight_when_scraped(tmp_path: Path) -> None:
    # The queue gauges are computed at the scrape itself: a unit running since the last scrape is
    # counted (a gauge left at what was true after the previous piece of work would say 0).
    release = asyncio.Event()
    running = asyncio.Event()

    async def slow(unit: WorkUnit) -> None:
        running.set()
        await release.wait()

    def gauges(body: bytes) -> dict[str, float]:
        wanted = ("reactor_workers_busy", "reactor_queue_depth", "reactor_oldest_pending_age_seconds")
        return {
            s.name: s.value for family in text_string_to_metric_families(body.decode()) for s in family.samples
            if s.name in wanted
        }

    settings = with_overrides(Settings(), graph={"tenant_id": TENANT}, store={"url": f"sqlite:///{tmp_path / 'r.db'}"})
    service = Service(settings, SQLiteStore(str(tmp_path / "r.db")), slow)
    await service.start()
    try:
        await service.enqueue([JournalItem("user", "5a0e0000-0000-4000-8000-000000000002", time.time() - 5, {}, "s", "updated")])
        await asyncio.wait_for(running.wait(), 10)
        during = gauges((await service.metrics_text())[0])
        assert during["reactor_workers_busy"] == 1
        assert during["reactor_queue_depth"] == 1
        assert during["reactor_oldest_pending_age_seconds"] >= 5
        release.set()
        assert await service.dispatcher.wait_idle(10)
        after = gauges((await service.metrics_text())[0])
        assert after == {"reactor_workers_busy": 0, "reactor_queue_depth": 0, "reactor_oldest_pending_age_seconds": 0}
    finally:
        release.set()
        await service.stop()


@contextlib.asynccontextmanager
async def assembled(tmp_path: Path) -> AsyncIterator[tuple[Service, SyncEngine, list[float]]]:
    """A service built (not started) with its store open, and a clock the test turns for its engine's progress."""
    tmp_path.mkdir(exist_ok=True)
    service, engine = build_service(settings_for(tmp_path, subscriptions=False), SQLiteStore(str(tmp_path / "r.db")))
    now = [100.0]
    engine.progress.clock = engine.progress.wall = lambda: now[0]
    await service.store.open()
    try:
        yield service, engine, now
    finally:
        await service.store.close()
        for close in service.closers:
            await close()


def start_up_reconcile(progress: Progress, users: int) -> None:
    """A start-up reconcile that queued ``users`` users for the workers."""
    with progress.run("start-up reconcile", phase=READING_CHANGES, unit=""):
        progress.expect(f"user-{i}" for i in range(users))


async def test_status_shows_the_running_reconciles_progress(tmp_path: Path) -> None:
    async with assembled(tmp_path) as (service, engine, now):
        idle = (await service.status())["reconcile"]
        assert idle["running"] is False and idle["finished_at"] is None
        assert '<p id="reconcile">Idle; no reconcile has run here since start.</p>' in render(await service.status(), True, {})

        start_up_reconcile(engine.progress, 200)
        service.dispatcher.submit([JournalEntry("user", "user-40", now[0], {"reconcile": True}, seq=1)])  # still waiting
        now[0] += 4
        for i in range(40):
            engine.progress.settle(f"user-{i}")
        status = await service.status()
        assert {k: status["reconcile"][k] for k in ("running", "round", "phase", "done", "total")} == {
            "running": True, "round": "start-up reconcile", "phase": "applying", "done": 40, "total": 200,
        }
        assert status["reconcile"]["rate_per_second"] == 10.0 and status["reconcile"]["eta_seconds"] == 16.0
        page = render(status, True, {})
        assert '<p id="reconcile">start-up reconcile: applying 40/200 users, 10.0/s, ETA 16 s</p>' in page
        assert '<progress id="reconcile-bar" max="200" value="40"></progress>' in page

        for i in range(40, 200):
            engine.progress.settle(f"user-{i}")
        now[0] += 60
        ended = (await service.status())["reconcile"]
        assert ended["running"] is False and ended["error"] is None and (ended["done"], ended["total"]) == (200, 200)
        assert '<p id="reconcile">Idle; start-up reconcile finished in 4 s, <span title=' in render(
            await service.status(), True, {}
        )


async def test_a_reconcile_whose_users_went_elsewhere_ends_when_the_workers_here_are_idle(tmp_path: Path) -> None:
    async with assembled(tmp_path) as (service, engine, now):
        start_up_reconcile(engine.progress, 200)
        engine.progress.settle("user-0")
        now[0] += 60
        ended = (await service.status())["reconcile"]  # nothing pending here: not stuck at 1/200
        assert ended["running"] is False and ended["finished_at"] == now[0] and (ended["done"], ended["total"]) == (1, 200)
