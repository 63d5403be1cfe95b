from __future__ import annotations

from typing import Any

import httpx

from graphsim import GraphSimulator

USER_SELECT = "displayName,userPrincipalName,accountEnabled,employeeOrgData"


async def drain(graph: httpx.AsyncClient, url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextLinks to the deltaLink: (objects, deltaLink, pages)."""
    objects: list[dict[str, Any]] = []
    pages = 0
    response = await graph.get(url, **kwargs)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        objects.extend(page["value"])
        if "@odata.deltaLink" in page:
            assert "@odata.nextLink" not in page
            return objects, page["@odata.deltaLink"], pages
        response = await graph.get(page["@odata.nextLink"], headers=kwargs.get("headers"))


def add_users(sim: GraphSimulator, count: int) -> list[str]:
    return [sim.add_user(user_principal_name=f"u{i}@x.test", display_name=f"U{i}") for i in range(count)]


async def test_users_initial_sync_pages_then_incremental_returns_only_changes(
    sim: GraphSimulator, graph: httpx.AsyncClient
) -> None:
    ids = add_users(sim, 7)
    small = {"Prefer": "odata.maxpagesize=3"}
    objects, delta_link, pages = await drain(graph, "/users/delta", params={"$select": USER_SELECT}, headers=small)
    assert pages == 3
    assert [o["id"] for o in objects] == ids
    assert set(objects[0]) == {"id", "displayName", "userPrincipalName", "accountEnabled", "employeeOrgData"}
    assert delta_link.startswith(str(graph.base_url).rstrip("/") + "/users/delta?")

    sim.update_user(ids[2], display_name="Renamed", employee_org_data={"costCenter": "CC9"})
    sim.update_user(ids[2], account_enabled=False)
    new = sim.add_user(user_principal_name="new@x.test")
    changed, delta_link2, _ = await drain(graph, delta_link)
    assert [o["id"] for o in changed] == [ids[2], new]
    assert changed[0]["displayName"] == "Renamed"
    assert changed[0]["accountEnabled"] is False
    assert changed[0]["employeeOrgData"] == {"costCenter": "CC9", "division": None}

    nothing, _, _ = await drain(graph, delta_link2)
    assert nothing == []


async def test_users_removed_reasons_and_restore(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    soft, hard, back = add_users(sim, 3)
    _, link, _ = await drain(graph, "/users/delta", params={"$select": "displayName"})
    sim.soft_delete_user(soft)
    sim.hard_delete_user(hard)
    sim.soft_delete_user(back)
    sim.restore_user(back)
    changed, link, _ = await drain(graph, link)
    by_id = {o["id"]: o for o in changed}
    assert by_id[soft] == {"id": soft, "@removed": {"reason": "changed"}}
    assert by_id[hard] == {"id": hard, "@removed": {"reason": "deleted"}}
    assert by_id[back] == {"id": back, "displayName": "U2"}

    sim.hard_delete_user(soft)
    changed, _, _ = await drain(graph, link)
    assert changed == [{"id": soft, "@removed": {"reason": "deleted"}}]


async def test_groups_members_delta_adds_removes_and_splits_large_groups(
    sim: GraphSimulator, graph: httpx.AsyncClient
) -> None:
    users = add_users(sim, 5)
    big = sim.add_group(display_name="Big")
    small = sim.add_group(display_name="Small")
    for uid in users:
        sim.add_member(big, uid)
    sim.add_member(small, users[0])
    params = {"$select": "displayName,members"}
    objects, link, pages = await drain(graph, "/groups/delta", params=params, headers={"Prefer": "odata.maxpagesize=2"})
    assert pages >= 3
    big_parts = [o for o in objects if o["id"] == big]
    assert len(big_parts) == 3
    assert all(o["displayName"] == "Big" for o in big_parts)
    members = [m["id"] for o in big_parts for m in o["members@delta"]]
    assert sorted(members) == sorted(users)
    assert all(m["@odata.type"] == "#microsoft.graph.user" for o in big_parts for m in o["members@delta"])

    sim.remove_member(big, users[1])
    sim.add_member(small, users[4])
    sim.soft_delete_user(users[0])
    changed, link, _ = await drain(graph, link)
    deltas = {o["id"]: {m["id"]: m.get("@removed") for m in o["members@delta"]} for o in changed}
    assert deltas[big] == {users[1]: {"reason": "deleted"}, users[0]: {"reason": "deleted"}}
    assert deltas[small] == {users[4]: None, users[0]: {"reason": "deleted"}}

    sim.restore_user(users[0])
    sim.delete_group(small)
    changed, _, _ = await drain(graph, link)
    by_id = {o["id"]: o for o in changed}
    assert by_id[small] == {"id": small, "@removed": {"reason": "deleted"}}
    assert by_id[big]["members@delta"] == [{"@odata.type": "#microsoft.graph.user", "id": users[0]}]


async def test_groups_filter_by_ids_and_limit(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    wanted = sim.add_group(display_name="Wanted")
    sim.add_group(display_name="Other")
    objects, _, _ = await drain(graph, "/groups/delta", params={"$select": "displayName", "$filter": f"id eq '{wanted}'"})
    assert [o["id"] for o in objects] == [wanted]
    too_many = " or ".join(f"id eq '{i:08d}-0000-0000-0000-000000000000'" for i in range(51))
    response = await graph.get("/groups/delta", params={"$filter": too_many})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


async def test_deltatoken_latest_starts_from_now(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    add_users(sim, 3)
    response = await graph.get("/users/delta", params={"$deltatoken": "latest", "$select": "displayName"})
    page = response.json()
    assert page["value"] == []
    assert "@odata.nextLink" not in page
    later = sim.add_user(user_principal_name="later@x.test", display_name="Later")
    changed, _, _ = await drain(graph, page["@odata.deltaLink"])
    assert changed == [{"id": later, "displayName": "Later"}]


async def test_expired_and_aged_delta_links_answer_410(sim: GraphSimulator, graph: httpx.AsyncClient, clock: Any) -> None:
    add_users(sim, 3)
    _, link, _ = await drain(graph, "/users/delta")
    sim.expire_delta_tokens()
    response = await graph.get(link)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "syncStateNotFound"

    _, link, _ = await drain(graph, "/groups/delta")
    clock.advance(6 * 24 * 3600)
    assert (await graph.get(link)).status_code == 200
    _, link, _ = await drain(graph, "/groups/delta")
    clock.advance(7 * 24 * 3600 + 1)
    assert (await graph.get(link)).status_code == 410


async def test_select_rules(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    uid = sim.add_user(
        user_principal_name="a@x.test",
        extension_attributes={3: "CC3"},
        extensions={"extension_0123456789abcdef0123456789abcdef_costCenter": "CCX"},
    )
    bad = await graph.get("/users/delta", params={"$select": "employeeOrgData/costCenter"})
    assert bad.status_code == 400
    assert set(bad.json()["error"]) >= {"code", "message"}
    sub_path = "onPremisesExtensionAttributes/extensionAttribute3"
    assert (await graph.get(f"/users/{uid}", params={"$select": sub_path})).status_code == 400
    assert (await graph.get(f"/users/{uid}", params={"$select": "noSuchProperty"})).status_code == 400
    ext = "extension_0123456789abcdef0123456789abcdef_costCenter"
    user = (await graph.get(f"/users/{uid}", params={"$select": f"onPremisesExtensionAttributes,{ext}"})).json()
    assert user["onPremisesExtensionAttributes"]["extensionAttribute3"] == "CC3"
    assert user["onPremisesExtensionAttributes"]["extensionAttribute1"] is None
    assert user[ext] == "CCX"
