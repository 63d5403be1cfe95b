"""SubscriptionManager against the Graph simulator (real HTTP, real validation handshake)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from graphsim import GraphSimulator
from reactor.config import ServerSettings, Settings
from reactor.errors import TransientError
from reactor.graph.client import GraphClient
from reactor.metrics import REGISTRY
from reactor.store.base import SubscriptionRecord
from reactor.store.sqlite import SQLiteStore
from reactor.times import parse_iso
from subscriptions.listing import live_rows
from subscriptions.manager import CHANGE_TYPE, SubscriptionManager
from subscriptions.status import publish
from tests.subscriptions.conftest import Clock, Receiver

Factory = Callable[..., SubscriptionManager]


def _by_resource(sim: GraphSimulator) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for sub in sim.subscriptions.values():
        out.setdefault(sub["resource"], []).append(sub)
    return out


async def _foreign(client: GraphClient, resource: str, url: str, client_state: str = "not-ours") -> str:
    created = await client.post_json(
        "subscriptions",
        {
            "changeType": CHANGE_TYPE,
            "notificationUrl": url,
            "resource": resource,
            "expirationDateTime": "2099-01-01T00:00:00+00:00",
            "clientState": client_state,
        },
    )
    return str(created["id"])


async def test_ensure_creates_users_and_groups_with_handshake(
    sim: GraphSimulator, make_manager: Factory, store: SQLiteStore, settings: Settings, gaps: list[str]
) -> None:
    manager = make_manager()
    await manager.load()
    status = await manager.ensure()
    assert status.ok, status.reason
    live = _by_resource(sim)
    assert set(live) == {"users", "groups"}
    records = {r.resource: r for r in await store.subscriptions()}
    for resource in ("users", "groups"):
        (sub,) = live[resource]
        record = records[resource]
        assert sub["id"] == record.id
        assert sub["changeType"] == "updated,deleted"
        assert sub["notificationUrl"] == settings.server.notification_url
        assert sub["lifecycleNotificationUrl"] == settings.server.lifecycle_url
        assert sub["clientState"] == record.client_state and 43 <= len(record.client_state) <= 128
        assert record.expires_at == parse_iso(sub["expirationDateTime"])
        item = status.get(resource)
        assert item is not None and (item.seconds_to_expiry or 0) > 28 * 86400
    assert records["users"].client_state != records["groups"].client_state
    assert gaps == []
    publish(status)  # what the service does at each scrape
    assert (REGISTRY.get_sample_value("reactor_subscription_expiry_seconds", {"resource": "users"}) or 0) > 28 * 86400
    assert (REGISTRY.get_sample_value("reactor_subscription_earliest_expiry_seconds") or 0) > 28 * 86400

    again = await manager.ensure()
    assert again.ok
    assert sim.calls["create_subscription"] == 2


async def test_state_survives_a_restart(sim: GraphSimulator, make_manager: Factory) -> None:
    first = make_manager()
    await first.load()
    await first.ensure()
    ids = {s["id"] for s in sim.subscriptions.values()}
    second = make_manager()
    await second.load()
    assert (await second.ensure()).ok
    assert {s["id"] for s in sim.subscriptions.values()} == ids
    assert sim.calls["create_subscription"] == 2
    assert sim.calls["get_subscription"] == 2  # read back once after the restart


async def test_a_subscription_of_ours_not_in_the_store_is_adopted_not_duplicated(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory, settings: Settings, store: SQLiteStore, gaps: list[str]
) -> None:
    stray = await _foreign(client, "users", settings.server.notification_url, client_state="lost-with-the-store")
    manager = make_manager()
    await manager.load()
    assert (await manager.ensure()).ok
    (users,) = _by_resource(sim)["users"]
    assert users["id"] != stray
    record = manager.record("users")
    assert record is not None and users["clientState"] == record.client_state
    assert any("adopted" in g for g in gaps)


async def test_409_on_create_adopts_the_conflicting_subscription(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory, settings: Settings, gaps: list[str]
) -> None:
    manager = make_manager()
    await manager.load()
    real_listing = manager.remote_subscriptions
    calls = 0

    async def listing_that_misses_the_race() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:  # another instance creates it right after our first listing
            await _foreign(client, "users", settings.server.notification_url)
            return []
        return await real_listing()

    manager.remote_subscriptions = listing_that_misses_the_race  # type: ignore[method-assign]
    assert (await manager.ensure()).ok
    live = _by_resource(sim)
    assert len(live["users"]) == 1 and len(live["groups"]) == 1
    assert live["users"][0]["clientState"] == manager.record("users").client_state  # type: ignore[union-attr]
    assert any("adopted" in g for g in gaps)


async def test_a_conflicting_foreign_subscription_degrades_and_is_left_alone(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory, receiver_url: str
) -> None:
    foreign = await _foreign(client, "users", receiver_url + "/someone-else")
    manager = make_manager()
    await manager.load()
    status = await manager.ensure()
    assert not status.ok
    users = status.get("users")
    assert users is not None and users.degraded and "409" in users.degraded
    assert status.get("groups").degraded is None  # type: ignore[union-attr]
    assert foreign in sim.subscriptions


async def test_renewal_when_less_than_the_share_remains(
    sim: GraphSimulator, make_manager: Factory, clock: Any, store: SQLiteStore, gaps: list[str]
) -> None:
    sim.subscription_lifetime_cap = timedelta(hours=4)
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    before = manager.record("users")
    assert before is not None
    clock.advance(3600)
    wait = await manager.tick()
    assert sim.calls["renew_subscription"] == 0
    assert 3500 <= wait <= 3600  # half of the 4 h lifetime is reached in another hour
    clock.advance(wait + 1)
    await manager.tick()
    assert sim.calls["renew_subscription"] == 2
    after = manager.record("users")
    assert after is not None and after.id == before.id
    assert after.expires_at == clock.now + 4 * 3600
    assert after.last_renewed_at == clock.now
    stored = {r.resource: r for r in await store.subscriptions()}
    assert stored["users"] == after
    assert gaps == []


async def test_404_on_renewal_recreates_and_reports_the_gap(
    sim: GraphSimulator, make_manager: Factory, clock: Any, gaps: list[str]
) -> None:
    sim.subscription_lifetime_cap = timedelta(hours=2)
    manager = make_manager(verify_interval=10 * 86400)
    await manager.load()
    await manager.ensure()
    old = manager.record("users")
    assert old is not None
    sim.remove_subscription(old.id, notify=False)
    clock.advance(3601)
    await manager.tick()
    new = manager.record("users")
    assert new is not None and new.id != old.id and new.id in sim.subscriptions
    assert len(gaps) == 1 and "404" in gaps[0] and old.id in gaps[0]
    assert manager.status().ok


async def test_failing_handshake_degrades_then_recovers(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, clock: Any
) -> None:
    receiver.healthy = False
    manager = make_manager()
    await manager.load()
    status = await manager.ensure()
    assert not status.ok
    assert status.get("users").subscription_id is None  # type: ignore[union-attr]
    assert "validation" in (status.reason or "").lower()
    assert sim.subscriptions == {}

    receiver.healthy = True
    await manager.tick()  # within the backoff: no new attempt
    assert sim.calls["create_subscription"] == 2
    clock.advance(61)
    wait = await manager.tick()
    assert manager.status().ok
    assert set(_by_resource(sim)) == {"users", "groups"}
    assert wait > 3000


async def test_quota_exhausted_degrades(sim: GraphSimulator, make_manager: Factory) -> None:
    sim.subscription_quota = 1
    manager = make_manager()
    await manager.load()
    status = await manager.ensure()
    assert status.get("users").degraded is None  # type: ignore[union-attr]
    groups = status.get("groups")
    assert groups is not None and groups.degraded and "403" in groups.degraded


async def test_a_lost_create_response_is_found_by_listing_not_duplicated(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory
) -> None:
    original = client.post_json
    lost = 0

    async def response_lost(path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        nonlocal lost
        result = await original(path, body, **kwargs)
        if lost == 0:
            lost += 1
            raise TransientError("connection reset after the request was sent")
        return result

    manager = make_manager()
    await manager.load()
    client.post_json = response_lost  # type: ignore[method-assign]
    status = await manager.ensure()
    client.post_json = original  # type: ignore[method-assign]
    assert status.get("users").degraded is None  # type: ignore[union-attr]
    (users,) = _by_resource(sim)["users"]
    assert users["id"] == manager.record("users").id  # type: ignore[union-attr]
    assert sim.calls["create_subscription"] == 2  # one POST per resource, none repeated


async def test_transient_failure_on_create_is_retried_later(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory, clock: Any
) -> None:
    original = client.post_json

    async def unreachable(path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        raise TransientError("Graph POST /v1.0/subscriptions: 503")

    client.post_json = unreachable  # type: ignore[method-assign]
    manager = make_manager()
    await manager.load()
    status = await manager.ensure()
    assert not status.ok and "503" in (status.reason or "")
    client.post_json = original  # type: ignore[method-assign]
    clock.advance(61)
    await manager.tick()
    assert manager.status().ok
    assert len(sim.subscriptions) == 2


async def test_a_new_public_url_replaces_the_subscriptions(
    sim: GraphSimulator, make_manager: Factory, settings: Settings, receiver_url: str, gaps: list[str]
) -> None:
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    old = set(sim.subscriptions)
    moved = replace(settings, server=ServerSettings(public_url=receiver_url + "/v2"))
    manager2 = make_manager(settings=moved)
    await manager2.load()
    assert (await manager2.ensure()).ok
    assert not (old & set(sim.subscriptions))
    assert {s["notificationUrl"] for s in sim.subscriptions.values()} == {receiver_url + "/v2/notifications"}
    assert len(gaps) == 2


async def test_delete_removes_ours_only(
    sim: GraphSimulator, client: GraphClient, make_manager: Factory, receiver_url: str, store: SQLiteStore
) -> None:
    foreign = await _foreign(client, "groups/" + "0" * 8 + "-0000-0000-0000-000000000001", receiver_url + "/other")
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    deleted = await manager.delete_all()
    assert len(deleted) == 2
    assert set(sim.subscriptions) == {foreign}
    assert await store.subscriptions() == []
    assert not manager.status().ok


async def test_list_state_shows_records_with_live_state(sim: GraphSimulator, make_manager: Factory) -> None:
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    gone = manager.record("groups")
    assert gone is not None
    sim.remove_subscription(gone.id, notify=False)
    rows = {row["resource"]: row for row in await live_rows(manager)}
    assert rows["users"]["live"] is True and rows["users"]["liveExpirationDateTime"]
    assert rows["groups"]["live"] is False


async def test_renew_all_forces_a_renewal(sim: GraphSimulator, make_manager: Factory, clock: Any) -> None:
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    clock.advance(60)
    assert (await manager.renew_all()).ok
    assert sim.calls["renew_subscription"] == 2


async def test_disabled_subscriptions_do_nothing(sim: GraphSimulator, make_manager: Factory, settings: Settings) -> None:
    off = replace(settings, subscriptions=replace(settings.subscriptions, enabled=False))
    manager = make_manager(settings=off)
    await manager.load()
    assert (await manager.ensure()).ok
    assert sim.calls["create_subscription"] == 0


async def test_the_gap_is_reported_once_the_subscription_is_live_again(
    sim: GraphSimulator, make_manager: Factory, receiver: Any, clock: Any, gaps: list[str]
) -> None:
    sim.subscription_lifetime_cap = timedelta(hours=2)
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    old = manager.record("users")
    assert old is not None
    sim.remove_subscription(old.id, notify=False)
    receiver.healthy = False
    clock.advance(3601)
    await manager.tick()
    assert manager.record("users") is None
    assert gaps == []  # a reconcile now could miss the changes until the subscription is back
    status = manager.status().get("users")
    assert status is not None and status.degraded and "validation" in status.degraded.lower()
    receiver.healthy = True
    clock.advance(61)
    await manager.tick()
    assert manager.status().ok
    assert len(gaps) == 1 and old.id in gaps[0]


async def test_a_duplicate_record_in_the_store_is_cleaned_up(
    sim: GraphSimulator, make_manager: Factory, store: SQLiteStore, clock: Any
) -> None:
    first = make_manager()
    await first.load()
    await first.ensure()
    current = first.record("users")
    assert current is not None
    older = replace(current, id="00000000-0000-0000-0000-0000000000aa", created_at=current.created_at - 100)
    await store.save_subscription(older)
    manager = make_manager()
    await manager.load()
    assert manager.record("users") == current
    assert (await manager.ensure()).ok
    assert {r.id for r in await store.subscriptions()} == {current.id, first.record("groups").id}  # type: ignore[union-attr]
    assert sim.calls["create_subscription"] == 2


async def test_the_client_state_is_stored_as_pending_before_graph_is_asked(
    make_manager: Callable[..., SubscriptionManager], receiver: Receiver, store: SQLiteStore
) -> None:
    """Graph may deliver notifications before its 201 reaches us: while the POST is in flight (Graph
    validating our endpoint), every replica's store already holds the clientState, as pending."""
    seen: list[list[SubscriptionRecord]] = []

    async def during_the_post() -> None:
        seen.append(await store.subscriptions())

    receiver.on_handshake = during_the_post
    manager = make_manager()
    await manager.load()
    await manager.ensure()
    assert len(seen) == 4  # notification and lifecycle URLs, for users and for groups
    for records in seen:
        pending = [r for r in records if r.pending]
        assert len(pending) == 1, records
        assert pending[0].client_state in {r.client_state for r in await store.subscriptions()}
    after = await store.subscriptions()
    assert sorted(r.resource for r in after) == ["groups", "users"] and not any(r.pending for r in after)


async def test_a_pending_record_left_by_a_crash_is_ignored_and_later_removed(
    make_manager: Callable[..., SubscriptionManager], store: SQLiteStore, clock: Clock
) -> None:
    await store.save_subscription(SubscriptionRecord(
        "pending:users:left-over", "users", "updated,deleted", "https://x/n", "https://x/l", "s" * 43,
        clock() + 600, clock(),
    ))
    manager = make_manager()
    await manager.load()
    assert manager.record("users") is None
    assert any(r.pending for r in await store.subscriptions())
    clock.advance(601)
    await manager.load()
    assert not any(r.pending for r in await store.subscriptions())
