"""``reactor sync --user`` (provision on demand) as an operator runs it, against the Graph simulator and
scim2-server with no reactor serving: the one person is provisioned and nobody else; ``--dry-run``
prints the same plan and writes nothing, neither in AskCody nor in the reactor's store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.person_tenant import Tenant, person_tenant
from tests.support.tenant_names import RECEPTION, ROLE


@pytest.fixture
async def tenant(tmp_path: Path) -> AsyncIterator[Tenant]:
    async with person_tenant(tmp_path) as t:
        yield t


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


async def test_one_user_by_upn_is_provisioned_through_the_nesting_and_nobody_else(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    code, out, err = await t.reactor("sync", "--user", t.upn["alice"])
    assert code == 0, err
    assert lines_with(out, "Entra:", t.upn["alice"], "enabled"), out
    assert lines_with(out, RECEPTION, "Alice Ødegaard ∈ Reception CPH nights ∈ Reception CPH ∈ Reception"), out
    assert lines_with(out, "applied", "create user", t.upn["alice"]), out
    assert lines_with(out, "applied", "add user", t.upn["alice"], RECEPTION), out

    state = await t.askcody()
    assert [x["externalId"] for x in state["users"]] == [u["alice"]]  # bob, the guest, jens, erik: still absent
    assert await t.memberships() == {RECEPTION: {u["alice"]}}  # Facility Management not even created
    alice = state["users"][0]
    assert alice["userName"] == t.upn["alice"] and alice["active"] is True
    # The store keeps her membership as Graph holds it (the service plans her from it), nobody else's.
    assert await t.stored_groups(u["alice"]) == {t.groups["nights"]}
    assert await t.stored_groups(u["jens"]) == set()

    code, out, err = await t.reactor("sync", "--user", t.upn["alice"])
    assert code == 0, err
    assert lines_with(out, "Plan: 0 operations"), out
    assert await t.askcody() == state


async def test_by_mail_and_by_object_id(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    code, out, err = await t.reactor("sync", "--user", "Siobhan.O'Brien@gmail.com", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["entra_id"] == u["guest"] and report["dry_run"] is False
    assert report["entra"]["user_principal_name"] == t.upn["guest"]
    assert {o["op"] for o in report["operations"]} == {"ensure_group", "create_user", "add_member"}
    assert {o["outcome"] for o in report["operations"]} == {"applied"}
    assert report["error"] is None and report["dead_letters"] == []

    code, out, err = await t.reactor("sync", "--user", u["jens"].upper())
    assert code == 0, err
    assert await t.memberships() == {ROLE: {u["guest"]}, RECEPTION: {u["jens"]}}
    jens = [x for x in (await t.askcody())["users"] if x["externalId"] == u["jens"]]
    assert jens[0]["emails"][0]["value"] == "jens.hansen@contoso.local"


async def test_leaving_scope_deprovisions_only_that_user(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    for name in ("bob", "guest"):
        code, _, err = await t.reactor("sync", "--user", t.upn[name])
        assert code == 0, err
    t.sim.remove_member(t.groups[ROLE], u["bob"])
    t.sim.remove_member(t.groups[ROLE], u["guest"])  # the guest leaves too, but is not the one synced

    code, out, err = await t.reactor("sync", "--user", t.upn["bob"])
    assert code == 0, err
    assert lines_with(out, "Out of scope", "in no configured group"), out
    assert lines_with(out, "applied", "remove user", t.upn["bob"]), out
    assert lines_with(out, "applied", "disable user", t.upn["bob"]), out
    state = {x["externalId"]: x for x in (await t.askcody())["users"]}
    assert state[u["bob"]]["active"] is False
    assert state[u["guest"]]["active"] is True
    assert await t.memberships() == {ROLE: {u["guest"]}}


async def test_dry_run_prints_the_plan_and_writes_nothing(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    code, _, err = await t.reactor("sync", "--user", t.upn["bob"])
    assert code == 0, err
    t.sim.update_user(u["bob"], display_name="Bob Martin-Jensen")
    # Jens was created in AskCody by hand before the reactor: a real sync would adopt him (and keep a mapping).
    async with t.client() as c:
        r = await c.post("/Users", json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": t.upn["jens"], "active": True,
        })
        assert r.status_code == 201, r.text
    before, mappings = await t.askcody(), await t.mappings()

    code, out, err = await t.reactor("sync", "--user", t.upn["bob"], "--dry-run")
    assert code == 0, err
    assert lines_with(out, "update user", t.upn["bob"], "Bob Martin-Jensen"), out
    assert lines_with(out, "Dry run: nothing applied"), out
    code, out, err = await t.reactor("sync", "--user", t.upn["jens"], "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] is True and {o["outcome"] for o in plan["operations"]} == {"planned"}
    assert [o["changes"]["external_id"] for o in plan["operations"] if o["op"] == "update_user"] == [u["jens"]]
    assert [o["op"] for o in plan["operations"] if o["op"] in ("add_member", "ensure_group")] == ["ensure_group", "add_member"]

    assert await t.askcody() == before
    assert await t.mappings() == mappings


async def test_an_unknown_user_is_a_failure_with_a_reason(tenant: Tenant) -> None:
    code, _, err = await tenant.reactor("sync", "--user", "nobody@contoso.com")
    assert code == 1
    assert "no Entra user" in err and "nobody@contoso.com" in err
    assert await tenant.askcody() == {"users": [], "groups": []}
