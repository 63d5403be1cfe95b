"""Nested groups in the simulator: group members in listings, transitiveMembers, delta and notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from graphsim import GraphSimulator
from tests.graphsim.test_graphsim_delivery import subscribed
from tests.graphsim.test_graphsim_delta import drain

if TYPE_CHECKING:
    from conftest import Receiver, Subscribe

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"


async def listed(graph: httpx.AsyncClient, url: str, **params: str) -> tuple[list[dict[str, Any]], int]:
    """Every member over every page: (members, pages)."""
    members: list[dict[str, Any]] = []
    pages = 0
    response = await graph.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        members.extend(page["value"])
        if "@odata.nextLink" not in page:
            return members, pages
        response = await graph.get(page["@odata.nextLink"])


def tree(sim: GraphSimulator) -> tuple[str, str, str, list[str]]:
    """Reception ∋ Reception-CPH ∋ Reception-CPH-Night, a user in each: (top, middle, bottom, users)."""
    top = sim.add_group(display_name="Reception")
    middle = sim.add_group(display_name="Reception-CPH")
    bottom = sim.add_group(display_name="Reception-CPH-Night")
    users = [
        sim.add_user(user_principal_name="ane.lund@contoso.dk", display_name="Ane Lund"),
        sim.add_user(user_principal_name="søren.ø@contoso.dk", display_name="Søren Ø"),
        sim.add_user(user_principal_name="o'brien_gmail.com#EXT#@contoso.onmicrosoft.com", display_name="Liam O'Brien"),
    ]
    for group, user in zip((top, middle, bottom), users, strict=True):
        sim.add_member(group, user)
    sim.add_member(top, middle)
    sim.add_member(middle, bottom)
    return top, middle, bottom, users


async def test_members_lists_nested_groups_with_their_type(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    top, middle, _, users = tree(sim)
    members, _ = await listed(graph, f"/groups/{top}/members", **{"$select": "id"})
    assert members == [{"@odata.type": USER, "id": users[0]}, {"@odata.type": GROUP, "id": middle}]
    named, _ = await listed(graph, f"/groups/{top}/members", **{"$select": "id,displayName"})
    assert named[1] == {"@odata.type": GROUP, "id": middle, "displayName": "Reception-CPH"}


async def test_transitive_members_at_any_depth_paged(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    top, middle, bottom, users = tree(sim)
    everyone, pages = await listed(graph, f"/groups/{top}/transitiveMembers", **{"$select": "id", "$top": "2"})
    assert pages == 3
    assert [(m["@odata.type"], m["id"]) for m in everyone] == [
        (USER, users[0]), (USER, users[1]), (USER, users[2]), (GROUP, middle), (GROUP, bottom)
    ]
    only_users, pages = await listed(
        graph, f"/groups/{top}/transitiveMembers/microsoft.graph.user", **{"$select": "id", "$top": "2"}
    )
    assert pages == 2
    assert only_users == [{"@odata.type": USER, "id": u} for u in users]
    assert sim.transitive_users(middle) == users[1:]


async def test_cycles_and_diamonds_list_each_member_once(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    top, middle, bottom, users = tree(sim)
    sim.add_member(bottom, top)  # a cycle: top ∋ middle ∋ bottom ∋ top
    side = sim.add_group(display_name="Reception-Backup")
    sim.add_member(top, side)
    sim.add_member(side, bottom)  # a diamond: top ∋ middle ∋ bottom and top ∋ side ∋ bottom
    members, _ = await listed(graph, f"/groups/{middle}/transitiveMembers", **{"$select": "id"})
    ids = [m["id"] for m in members]
    assert sorted(ids) == sorted([*users, top, bottom, side])
    assert len(ids) == len(set(ids))
    assert middle not in ids


async def test_a_group_cannot_be_its_own_member(sim: GraphSimulator) -> None:
    top = sim.add_group(display_name="Reception")
    with pytest.raises(ValueError, match="itself"):
        sim.add_member(top, top)


async def test_groups_delta_reports_nested_groups_in_members_delta(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    top, middle, bottom, users = tree(sim)
    flt = {"$filter": f"id eq '{top}' or id eq '{middle}' or id eq '{bottom}'", "$select": "displayName,members"}
    objects, link, _ = await drain(graph, "/groups/delta", params=flt)
    by_id = {o["id"]: o for o in objects}
    assert by_id[top]["members@delta"] == [{"@odata.type": USER, "id": users[0]}, {"@odata.type": GROUP, "id": middle}]

    sim.remove_member(middle, bottom)
    sim.add_member(bottom, sim.add_user(user_principal_name="ny@contoso.dk"))
    changed, link, _ = await drain(graph, link)
    by_id = {o["id"]: o for o in changed}
    assert by_id[middle]["members@delta"] == [{"@odata.type": GROUP, "id": bottom, "@removed": {"reason": "deleted"}}]
    assert by_id[bottom]["members@delta"][0]["@odata.type"] == USER

    sim.add_member(middle, bottom)
    sim.delete_group(bottom)
    changed, _, _ = await drain(graph, link)
    by_id = {o["id"]: o for o in changed}
    assert by_id[middle]["members@delta"] == [{"@odata.type": GROUP, "id": bottom, "@removed": {"reason": "deleted"}}]
    assert by_id[bottom] == {"id": bottom, "@removed": {"reason": "deleted"}}
    assert sim.member_groups(middle) == []


async def test_membership_changes_of_a_nested_group_are_notified_with_its_id(
    sim: GraphSimulator, receiver: Receiver, subscribe: Subscribe
) -> None:
    top, middle, bottom, _ = tree(sim)
    sub_id = await subscribed(subscribe, "groups")
    newcomer = sim.add_user(user_principal_name="maja.kowalska@contoso.dk")
    sim.add_member(bottom, newcomer)
    sim.remove_member(top, middle)
    await sim.wait_idle(5)
    heard = [(i["resource"], i["resourceData"]["members@delta"]) for i in receiver.items if i["subscriptionId"] == sub_id]
    assert heard == [
        (f"Groups/{bottom}", [{"@odata.type": USER, "id": newcomer}]),
        (f"Groups/{top}", [{"@odata.type": GROUP, "id": middle, "@removed": {"reason": "deleted"}}]),
    ]


async def test_seed_may_nest_a_group_listed_later(sim: GraphSimulator) -> None:
    uid = "6a1f7c1e-0000-4000-8000-000000000001"
    parent, child = "6a1f7c1e-0000-4000-8000-0000000000a1", "6a1f7c1e-0000-4000-8000-0000000000a2"
    sim.load_seed({
        "users": [{"id": uid, "user_principal_name": "jens@contoso.dk"}],
        "groups": [
            {"id": parent, "display_name": "Facility Management", "members": [child]},
            {"id": child, "display_name": "Facility Management Aarhus", "members": [uid]},
        ],
    })
    assert sim.member_groups(parent) == [child]
    assert sim.transitive_users(parent) == [uid]
