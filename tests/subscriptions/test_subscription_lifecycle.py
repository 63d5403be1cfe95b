"""Lifecycle notifications, delivered by the simulator to a real receiver, then handled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphsim import GraphSimulator
from subscriptions.lifecycle import handle_lifecycle
from subscriptions.manager import SubscriptionManager
from subscriptions.policy import REAUTHORIZE_DEBOUNCE_SECONDS
from tests.support.eventually import eventually

Factory = Callable[..., SubscriptionManager]


async def _ready(make_manager: Factory) -> SubscriptionManager:
    manager = make_manager()
    await manager.load()
    assert (await manager.ensure()).ok
    return manager


async def _deliver(sim: GraphSimulator, receiver: Any, sub_id: str, event: str) -> dict[str, Any]:
    assert await sim.send_lifecycle(sub_id, event)
    await eventually(lambda: any(i.get("lifecycleEvent") == event for i in receiver.items["lifecycle"]))
    item: dict[str, Any] = next(i for i in receiver.items["lifecycle"] if i.get("lifecycleEvent") == event)
    return item


async def test_reauthorization_required_reauthorizes(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, clock: Any
) -> None:
    manager = await _ready(make_manager)
    users = manager.record("users")
    assert users is not None
    clock.advance(11 * 60)
    item = await _deliver(sim, receiver, users.id, "reauthorizationRequired")
    assert await handle_lifecycle(manager, item) == "reauthorized"
    assert sim.calls["reauthorize"] == 1
    assert manager.record("users").last_reauthorized_at == clock.now  # type: ignore[union-attr]
    # the same request again within seconds is answered by the call just made
    clock.advance(REAUTHORIZE_DEBOUNCE_SECONDS / 2)
    assert (await handle_lifecycle(manager, item)).startswith("skipped")
    assert sim.calls["reauthorize"] == 1 and sim.calls["renew_subscription"] == 0


async def test_reauthorization_required_two_minutes_after_a_renewal_reauthorizes(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, clock: Any
) -> None:
    """Graph asks for a reason: a renewal minutes ago does not answer it (a debounce of seconds)."""
    manager = await _ready(make_manager)
    clock.advance(3600)
    assert (await manager.renew_all()).ok
    users = manager.record("users")
    assert users is not None and users.last_renewed_at == clock.now
    assert sim.calls["renew_subscription"] == 2
    clock.advance(120)
    item = await _deliver(sim, receiver, users.id, "reauthorizationRequired")
    assert await handle_lifecycle(manager, item) == "reauthorized"
    assert sim.calls["reauthorize"] == 1 and sim.calls["renew_subscription"] == 2
    assert manager.record("users").last_reauthorized_at == clock.now  # type: ignore[union-attr]


async def test_reauthorization_required_renews_when_renewal_is_due(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, clock: Any
) -> None:
    manager = await _ready(make_manager)
    users = manager.record("users")
    assert users is not None
    clock.advance(manager.renew_at(users) - clock.now + 1)
    item = await _deliver(sim, receiver, users.id, "reauthorizationRequired")
    assert await handle_lifecycle(manager, item) == "renewed"
    assert sim.calls["renew_subscription"] == 1 and sim.calls["reauthorize"] == 0


async def test_reauthorization_right_after_creation_is_skipped(sim: GraphSimulator, make_manager: Factory, receiver: Any) -> None:
    manager = await _ready(make_manager)
    groups = manager.record("groups")
    assert groups is not None
    item = await _deliver(sim, receiver, groups.id, "reauthorizationRequired")
    assert (await handle_lifecycle(manager, item)).startswith("skipped")
    assert sim.calls["reauthorize"] == 0


async def test_subscription_removed_creates_again_and_reports_the_gap(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, gaps: list[str]
) -> None:
    manager = await _ready(make_manager)
    old = manager.record("groups")
    assert old is not None
    item = await _deliver(sim, receiver, old.id, "subscriptionRemoved")
    assert await handle_lifecycle(manager, item) == "recreated"
    new = manager.record("groups")
    assert new is not None and new.id != old.id and new.id in sim.subscriptions
    assert old.id not in sim.subscriptions
    assert len(gaps) == 1 and old.id in gaps[0]


async def test_missed_asks_for_a_reconcile(sim: GraphSimulator, make_manager: Factory, receiver: Any, gaps: list[str]) -> None:
    manager = await _ready(make_manager)
    users = manager.record("users")
    assert users is not None
    item = await _deliver(sim, receiver, users.id, "missed")
    assert await handle_lifecycle(manager, item) == "reconcile requested"
    assert len(gaps) == 1 and "missed" in gaps[0]


async def test_items_of_a_subscription_that_is_not_ours_are_ignored(make_manager: Factory, gaps: list[str]) -> None:
    """(Forged clientStates never get here: the intake drops them before journaling, see
    tests/proofs/test_proof_forged.py.)"""
    manager = await _ready(make_manager)
    unknown = {"subscriptionId": "nope", "lifecycleEvent": "missed"}
    assert (await handle_lifecycle(manager, unknown)).startswith("ignored")
    assert gaps == []
