from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphsim import GraphSimulator
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from conftest import ManualClock, Receiver, Subscribe


async def subscribed(subscribe: Subscribe, resource: str, **overrides: Any) -> str:
    response = await subscribe(resource, **overrides)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_user_changes_are_delivered_batched_with_client_state(
    sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe
) -> None:
    sub_id = await subscribed(subscribe, "users")
    ids = [sim.add_user(user_principal_name=f"u{i}@x.test") for i in range(5)]
    await eventually(lambda: len(receiver.items) == 5, "5 notifications delivered", 5)
    assert len(receiver.batches) == 1
    item = receiver.items[0]
    assert item["subscriptionId"] == sub_id
    assert item["clientState"] == "s3cret"
    assert item["changeType"] == "updated"
    assert item["tenantId"] == sim.tenant_id
    assert item["resource"] == f"Users/{ids[0]}"
    assert item["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.User",
        "@odata.id": f"Users/{ids[0]}",
        "id": ids[0],
        "organizationId": sim.tenant_id,
    }
    assert item["subscriptionExpirationDateTime"] == sim.subscriptions[sub_id]["expirationDateTime"]
    await sim.wait_idle(5)
    assert sim.delivered == receiver.items


async def test_batches_hold_at_most_batch_size_items(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    await subscribed(subscribe, "users")
    for i in range(45):
        sim.add_user(user_principal_name=f"u{i}@x.test")
    await sim.wait_idle(5)
    assert len(receiver.items) == 45
    assert max(len(b) for b in receiver.batches) == sim.delivery.batch_size == 20


async def test_which_subscriptions_hear_which_changes(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    uid = sim.add_user(user_principal_name="a@x.test")
    other = sim.add_user(user_principal_name="b@x.test")
    gid = sim.add_group(display_name="Reception")
    users_sub = await subscribed(subscribe, "users")
    one_user_sub = await subscribed(subscribe, f"users/{other}")
    groups_sub = await subscribed(subscribe, "groups")
    members_sub = await subscribed(subscribe, f"groups/{gid}/members")

    sim.add_member(gid, uid)
    sim.update_group(gid, display_name="Front desk")
    sim.soft_delete_user(uid)
    sim.restore_user(uid)
    sim.hard_delete_user(uid)
    sim.delete_group(gid)
    await sim.wait_idle(5)

    def heard(sub_id: str) -> list[tuple[str, str, Any]]:
        return [
            (i["changeType"], i["resource"], i["resourceData"].get("members@delta"))
            for i in receiver.items
            if i["subscriptionId"] == sub_id
        ]

    added = [{"@odata.type": "#microsoft.graph.user", "id": uid}]
    removed = [{"@odata.type": "#microsoft.graph.user", "id": uid, "@removed": {"reason": "deleted"}}]
    group = f"Groups/{gid}"
    user = f"Users/{uid}"
    assert heard(users_sub) == [("updated", user, None), ("updated", user, None), ("deleted", user, None)]
    assert heard(one_user_sub) == []
    assert heard(groups_sub) == [
        ("updated", group, added),
        ("updated", group, None),
        ("updated", group, removed),
        ("updated", group, added),
        ("updated", group, removed),
        ("deleted", group, None),
    ]
    assert heard(members_sub) == [
        ("updated", group, added),
        ("updated", group, removed),
        ("updated", group, added),
        ("updated", group, removed),
        ("deleted", group, None),
    ]
    assert all(i["resourceData"]["@odata.type"] == "#Microsoft.Graph.Group" for i in receiver.items if i["resource"] == group)


async def test_duplicate_rate_one_sends_everything_twice(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    await subscribed(subscribe, "users")
    sim.faults.duplicate_rate = 1.0
    ids = [sim.add_user(user_principal_name=f"u{i}@x.test") for i in range(3)]
    await sim.wait_idle(5)
    assert sorted(i["resourceData"]["id"] for i in receiver.items) == sorted(ids * 2)


async def test_drop_rate_one_delivers_nothing(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    await subscribed(subscribe, "users")
    sim.faults.drop_rate = 1.0
    for i in range(5):
        sim.add_user(user_principal_name=f"u{i}@x.test")
    await sim.wait_idle(5)
    assert receiver.items == []
    assert sim.delivered == []
    assert sim.delivery.stats["dropped"] == 5


async def test_failed_posts_are_retried_until_accepted(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    await subscribed(subscribe, "users")
    receiver.fail_next = 3
    uid = sim.add_user(user_principal_name="a@x.test")
    await sim.wait_idle(5)
    assert [i["resourceData"]["id"] for i in receiver.items] == [uid]
    assert sim.delivery.stats["failed_posts"] == 3


async def test_items_are_abandoned_after_the_retry_horizon(
    sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe
) -> None:
    await subscribed(subscribe, "users")
    receiver.status = 503
    sim.delivery.retry_horizon = 0.1
    sim.add_user(user_principal_name="a@x.test")
    await sim.wait_idle(5)
    assert sim.delivered == []
    assert len(sim.delivery.abandoned) == 1


async def test_delay_and_reorder(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    await subscribed(subscribe, "users")
    sim.faults.delay_seconds = 0.05
    sim.faults.reorder = True
    ids = [sim.add_user(user_principal_name=f"u{i}@x.test") for i in range(12)]
    await sim.wait_idle(5)
    got = [i["resourceData"]["id"] for i in receiver.items]
    assert sorted(got) == sorted(ids)
    assert got != ids


async def test_expired_subscription_hears_nothing(
    sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe, clock: ManualClock
) -> None:
    await subscribed(subscribe, "users")
    clock.advance(4 * 24 * 3600)
    sim.add_user(user_principal_name="late@x.test")
    await sim.wait_idle(5)
    assert receiver.items == []
