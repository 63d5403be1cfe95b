from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import httpx

from graphsim import GraphSimulator
from graphsim.timestamps import parse_iso, to_iso
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from conftest import ManualClock, Receiver, Subscribe

MINUTE = 60.0


async def test_create_runs_handshake_on_both_urls_and_returns_subscription(
    sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe, clock: ManualClock
) -> None:
    response = await subscribe("groups")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["resource"] == "groups"
    assert body["changeType"] == "updated,deleted"
    assert body["clientState"] == "s3cret"
    assert body["expirationDateTime"].endswith("Z")
    assert parse_iso(body["expirationDateTime"]) == clock() + 3 * 24 * 3600
    assert sim.subscriptions[body["id"]]["clientState"] == "s3cret"
    assert len(receiver.handshake_tokens) == 2
    token = receiver.handshake_tokens[0]
    assert " " in token and ":" in token and "+" in token
    assert parse_qs(receiver.raw_queries[0])["validationToken"] == [token]
    assert sim.calls["create_subscription"] == 1


async def test_failing_handshakes_answer_400(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    sim.handshake_timeout = 0.2
    for mode in ("wrong", "error", "hang"):
        receiver.handshake = mode
        response = await subscribe("users")
        assert response.status_code == 400, mode
        assert "validation request failed" in response.json()["error"]["message"]
    assert sim.subscriptions == {}
    unreachable = await subscribe("users", notificationUrl="http://127.0.0.1:9/notifications")
    assert unreachable.status_code == 400


async def test_request_validation(subscribe: Subscribe, clock: ManualClock) -> None:
    naive = datetime.fromtimestamp(clock() + 3600, UTC).replace(tzinfo=None).isoformat()
    assert (await subscribe("users", expirationDateTime=naive)).status_code == 400
    assert (await subscribe("users", expirationDateTime=None)).status_code == 400
    assert (await subscribe("users", changeType="created,updated")).status_code == 400
    assert (await subscribe("users", clientState="x" * 129)).status_code == 400
    assert (await subscribe("devices")).status_code == 400
    assert (await subscribe("users/abc/members")).status_code == 400


async def test_duplicate_resource_and_change_type_is_409(subscribe: Subscribe) -> None:
    assert (await subscribe("groups/abc/members")).status_code == 201
    conflict = await subscribe("groups/abc/members")
    assert conflict.status_code == 409
    assert (await subscribe("groups/abc/members", changeType="updated")).status_code == 201


async def test_expiration_is_clamped_and_capped(sim: GraphSimulator, subscribe: Subscribe, clock: ManualClock) -> None:
    short = await subscribe("users/a", expirationDateTime=to_iso(clock() + 5 * MINUTE))
    assert parse_iso(short.json()["expirationDateTime"]) == clock() + 45 * MINUTE
    long = await subscribe("users/b", expirationDateTime=to_iso(clock() + 60 * 24 * 3600))
    assert parse_iso(long.json()["expirationDateTime"]) == clock() + 41_760 * MINUTE
    sim.subscription_lifetime_cap = timedelta(minutes=90)
    capped = await subscribe("users/c", expirationDateTime=to_iso(clock() + 24 * 3600))
    assert parse_iso(capped.json()["expirationDateTime"]) == clock() + 90 * MINUTE
    offset = datetime.fromtimestamp(clock() + 2 * 3600, UTC).astimezone(timezone(timedelta(hours=2)))
    with_offset = await subscribe("users/d", expirationDateTime=offset.isoformat())
    assert with_offset.status_code == 201


async def test_quota_answers_403(sim: GraphSimulator, subscribe: Subscribe) -> None:
    sim.subscription_quota = 2
    assert (await subscribe("users/a")).status_code == 201
    assert (await subscribe("users/b")).status_code == 201
    assert (await subscribe("users/c")).status_code == 403


async def test_renew_list_delete_reauthorize(
    sim: GraphSimulator, graph: httpx.AsyncClient, subscribe: Subscribe, clock: ManualClock
) -> None:
    sub_id = (await subscribe("users")).json()["id"]
    renewed = await graph.patch(f"/subscriptions/{sub_id}", json={"expirationDateTime": to_iso(clock() + 2 * 24 * 3600)})
    assert renewed.status_code == 200
    assert parse_iso(renewed.json()["expirationDateTime"]) == clock() + 2 * 24 * 3600
    listed = (await graph.get("/subscriptions")).json()["value"]
    assert [s["id"] for s in listed] == [sub_id]
    assert (await graph.post(f"/subscriptions/{sub_id}/reauthorize")).status_code == 204
    bad_patch = await graph.patch(f"/subscriptions/{sub_id}", json={"lifecycleNotificationUrl": "http://x.test/l"})
    assert bad_patch.status_code == 400
    assert (await graph.delete(f"/subscriptions/{sub_id}")).status_code == 204
    assert (await graph.delete(f"/subscriptions/{sub_id}")).status_code == 404
    assert (await graph.get(f"/subscriptions/{sub_id}")).status_code == 404
    assert sim.calls["renew_subscription"] == 2
    assert sim.calls["delete_subscription"] == 2


async def test_removed_subscription_renews_404_and_lifecycle_is_sent(
    sim: GraphSimulator, graph: httpx.AsyncClient, receiver: Receiver, subscribe: Subscribe, clock: ManualClock
) -> None:
    sub_id = (await subscribe("users")).json()["id"]
    sim.remove_subscription(sub_id, notify=True)
    response = await graph.patch(f"/subscriptions/{sub_id}", json={"expirationDateTime": to_iso(clock() + 86400)})
    assert response.status_code == 404
    await eventually(lambda: len(receiver.lifecycle) == 1, "the lifecycle event delivered", 5)
    event = receiver.lifecycle[0]
    assert event["lifecycleEvent"] == "subscriptionRemoved"
    assert event["clientState"] == "s3cret"
    assert event["subscriptionId"] == sub_id


async def test_send_lifecycle_reauthorization(sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe) -> None:
    sub_id = (await subscribe("groups")).json()["id"]
    assert await sim.send_lifecycle(sub_id, "reauthorizationRequired") is True
    assert receiver.lifecycle[-1]["lifecycleEvent"] == "reauthorizationRequired"
    assert sim.lifecycle_delivered[-1]["tenantId"] == sim.tenant_id
    assert sub_id in sim.subscriptions


async def test_subscriptions_expire_by_the_clock(
    sim: GraphSimulator, graph: httpx.AsyncClient, subscribe: Subscribe, clock: ManualClock
) -> None:
    sub_id = (await subscribe("users", expirationDateTime=to_iso(clock() + 3600))).json()["id"]
    clock.advance(3600 + 1)
    assert (await graph.get("/subscriptions")).json()["value"] == []
    response = await graph.patch(f"/subscriptions/{sub_id}", json={"expirationDateTime": to_iso(clock() + 86400)})
    assert response.status_code == 404
    assert (await subscribe("users")).status_code == 201
