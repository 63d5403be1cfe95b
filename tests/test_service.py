"""The Service and its assembly, directly: everything it runs is given at construction, started in
order and stopped together; readiness, status and metrics include what was given."""

from __future__ import annotations

import time
from pathlib import Path

from reactor.config import GroupMapping, Secret, Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.service import Service
from reactor.store import JournalItem, SQLiteStore
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
