from __future__ import annotations

import time

import httpx

from graphsim import GraphSimulator


async def test_get_user_returns_only_selected_properties(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    uid = sim.add_user(
        user_principal_name="ann@x.test",
        display_name="Ann",
        given_name="Ann",
        surname="Lee",
        mail="ann@x.test",
        employee_org_data={"costCenter": "CC1", "division": "D"},
    )
    response = await graph.get(f"/users/{uid}", params={"$select": "displayName,mail,employeeOrgData"})
    assert response.status_code == 200
    body = response.json()
    body.pop("@odata.context")
    org = {"costCenter": "CC1", "division": "D"}
    assert body == {"id": uid, "displayName": "Ann", "mail": "ann@x.test", "employeeOrgData": org}
    default = (await graph.get(f"/users/{uid}")).json()
    assert default["userPrincipalName"] == "ann@x.test"
    assert "employeeOrgData" not in default


async def test_unknown_and_soft_deleted_users_are_404(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    uid = sim.add_user(user_principal_name="gone@x.test")
    sim.soft_delete_user(uid)
    for key in (uid, "00000000-0000-0000-0000-000000000000"):
        response = await graph.get(f"/users/{key}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "Request_ResourceNotFound"


async def test_users_filtered_by_mail_or_upn(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    guest = sim.add_user(
        user_principal_name="siobhan.o'brien_gmail.com#EXT#@x.onmicrosoft.com", mail="Siobhan.O'Brien@gmail.com",
        display_name="Siobhán O'Brien",
    )
    hybrid = sim.add_user(user_principal_name="jens@x.test", mail="jens.hansen@x.local")
    gone = sim.add_user(user_principal_name="gone@x.test", mail="gone@x.test")
    sim.soft_delete_user(gone)

    async def found(query: str) -> list[str]:
        response = await graph.get("/users", params={"$filter": query, "$select": "id,displayName"})
        assert response.status_code == 200, response.text
        return [u["id"] for u in response.json()["value"]]

    assert await found("mail eq 'siobhan.o''brien@gmail.com'") == [guest]  # case-insensitive, quote doubled
    assert await found("userPrincipalName eq 'siobhan.o''brien_gmail.com#EXT#@x.onmicrosoft.com'") == [guest]
    assert await found("mail eq 'jens.hansen@x.local'") == [hybrid]
    assert await found(f"id eq '{hybrid}'") == [hybrid]
    assert await found("mail eq 'gone@x.test'") == []  # soft-deleted users are not listed
    for bad in ("displayName eq 'Jens'", "startswith(mail,'j')", None):
        response = await graph.get("/users", params={"$filter": bad} if bad else None)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


async def test_group_and_paged_members(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    gid = sim.add_group(display_name="Reception")
    users = [sim.add_user(user_principal_name=f"m{i}@x.test") for i in range(5)]
    for uid in users:
        sim.add_member(gid, uid)
    sim.soft_delete_user(users[4])
    group = (await graph.get(f"/groups/{gid}", params={"$select": "displayName,securityEnabled"})).json()
    assert (group["displayName"], group["securityEnabled"]) == ("Reception", True)

    seen: list[str] = []
    response = await graph.get(f"/groups/{gid}/members", params={"$select": "id", "$top": "2"})
    pages = 0
    while True:
        page = response.json()
        pages += 1
        assert all(m["@odata.type"] == "#microsoft.graph.user" for m in page["value"])
        seen.extend(m["id"] for m in page["value"])
        if "@odata.nextLink" not in page:
            break
        response = await graph.get(page["@odata.nextLink"])
    assert seen == users[:4]
    assert pages == 2
    assert (await graph.get(f"/groups/{gid}/members", params={"$top": "1000"})).status_code == 400
    assert sim.calls["list_members"] == 3
    assert sim.calls["get_group"] == 1


async def test_member_of_and_check_member_groups(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    uid = sim.add_user(user_principal_name="x@x.test")
    mine, other = sim.add_group(display_name="A"), sim.add_group(display_name="B")
    sim.add_member(mine, uid)
    member_of = (await graph.get(f"/users/{uid}/memberOf", params={"$select": "id"})).json()["value"]
    assert [g["id"] for g in member_of] == [mine]
    checked = await graph.post(f"/users/{uid}/checkMemberGroups", json={"groupIds": [mine, other]})
    assert checked.json()["value"] == [mine]


async def test_bearer_token_is_checked(sim: GraphSimulator, base_url: str) -> None:
    uid = sim.add_user(user_principal_name="a@x.test")
    async with httpx.AsyncClient(base_url=base_url, verify=False) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await anonymous.get(f"/users/{uid}", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


async def test_throttle_answers_429_with_retry_after_then_recovers(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    sim.throttle(count=2, retry_after=3, path_prefix="/v1.0/groups/delta")
    assert (await graph.get("/users/delta")).status_code == 200
    for _ in range(2):
        response = await graph.get("/groups/delta")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json()["error"]["code"] == "TooManyRequests"
    assert (await graph.get("/groups/delta")).status_code == 200
    assert sim.calls["groups_delta"] == 3

    sim.fail(count=1, status=503)
    assert (await graph.get("/users/delta")).status_code == 503
    assert (await graph.get("/users/delta")).status_code == 200


async def test_unknown_path_has_graph_error_body(graph: httpx.AsyncClient) -> None:
    response = await graph.get("/nothing/here")
    assert response.status_code == 404
    assert "code" in response.json()["error"]


async def test_large_initial_sync_is_fast(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    gid = sim.add_group(display_name="All")
    for i in range(2_000):
        sim.add_member(gid, sim.add_user(user_principal_name=f"bulk{i}@x.test"))
    started = time.perf_counter()
    url: str | None = "/users/delta?$select=displayName"
    count = 0
    while url:
        page = (await graph.get(url)).json()
        count += len(page["value"])
        url = page.get("@odata.nextLink")
    assert count == 2_000
    assert time.perf_counter() - started < 5


async def test_guests_and_hybrid_users_say_so(sim: GraphSimulator, graph: httpx.AsyncClient) -> None:
    guest = sim.add_user(
        user_principal_name="anna.berg_contoso.dk#EXT#@fabrikam.onmicrosoft.com", mail="anna.berg@contoso.dk",
        user_type="Guest",
    )
    hybrid = sim.add_user(user_principal_name="ole.hansen@corp.contoso.local", on_premises_sync_enabled=True)
    cloud = sim.add_user(user_principal_name="mei.chen@fabrikam.com")
    select = {"$select": "userType,onPremisesSyncEnabled"}
    answers = [(await graph.get(f"/users/{uid}", params=select)).json() for uid in (guest, hybrid, cloud)]
    assert [(a["userType"], a["onPremisesSyncEnabled"]) for a in answers] == [
        ("Guest", None), ("Member", True), ("Member", None)
    ]
    sim.update_user(guest, user_type="Member")
    assert sim.get_user(guest)["userType"] == "Member"  # type: ignore[index]
