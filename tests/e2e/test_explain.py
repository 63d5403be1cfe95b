"""``reactor explain USER`` as an operator runs it, against the Graph simulator and scim2-server: for a
person in scope through nested groups it shows the path, what AskCody should hold and what it holds,
the difference and the recent changes; for a person out of scope it says why. It writes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reactor.store import SQLiteStore
from tests.e2e.person_tenant import Tenant, person_tenant
from tests.support.tenant_names import RECEPTION, ROLE

ALICE_PATH = "Alice Ødegaard ∈ Reception CPH nights ∈ Reception CPH ∈ Reception"


@pytest.fixture
async def tenant(tmp_path: Path) -> AsyncIterator[Tenant]:
    async with person_tenant(tmp_path) as t:
        yield t


async def explain(t: Tenant, user: str) -> dict[str, Any]:
    code, out, err = await t.reactor("explain", user, "--json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


async def test_a_user_in_scope_through_nesting_shows_path_states_and_recent_changes(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    code, _, err = await t.reactor("sync", "--user", t.upn["alice"])
    assert code == 0, err
    t.sim.update_user(u["alice"], display_name="Alice Ødegaard-Berg")  # not synced yet: a difference

    before, mappings = await t.askcody(), await t.mappings()
    r = await explain(t, t.upn["alice"])
    assert r["entra_id"] == u["alice"] and r["in_scope"] is True and r["access"] == "active"
    assert r["entra"]["enabled"] is True and r["entra"]["cost_center"] == "CC-4711"
    [group] = r["groups"]
    assert group["askcody_group"] == RECEPTION and group["grants"] == "reception" and group["depth"] == 2
    assert [g["name"] for g in group["path"]] == ["Reception", "Reception CPH", "Reception CPH nights"]
    assert group["path_text"] == ALICE_PATH.replace("Alice Ødegaard", "Alice Ødegaard-Berg")

    expected, actual = r["expected"], r["actual"]
    assert expected["user_name"] == actual["user_name"] == t.upn["alice"]
    assert expected["groups"] == actual["groups"] == [RECEPTION]
    assert expected["active"] is actual["active"] is True
    assert expected["display_name"] == "Alice Ødegaard-Berg" and actual["display_name"] == "Alice Ødegaard"
    assert len(r["difference"]) == 1 and "Alice Ødegaard-Berg" in r["difference"][0]

    whats = [c["what"] for c in r["recent_changes"]]
    assert any(w.startswith(f"create user {t.upn['alice']}") for w in whats), whats
    assert any(w.startswith(f"add user {t.upn['alice']} to group {RECEPTION!r}") for w in whats), whats
    assert {c["cause"] for c in r["recent_changes"]} == {"reactor sync --user"}
    assert r["dead_letters"] == []
    assert await t.askcody() == before and await t.mappings() == mappings  # explaining writes nothing

    code, out, err = await t.reactor("explain", u["alice"])  # by object id, for people
    assert code == 0, err
    assert lines_with(out, "AskCody access: active (in scope)"), out
    assert lines_with(out, RECEPTION, "nested 2 deep", ALICE_PATH.replace("Alice Ødegaard", "Alice Ødegaard-Berg")), out
    assert lines_with(out, "Expected in AskCody: active", "Alice Ødegaard-Berg", RECEPTION), out
    assert lines_with(out, "AskCody holds now: active", "'Alice Ødegaard'", RECEPTION, actual["scim_id"]), out
    assert lines_with(out, "update user", "Alice Ødegaard-Berg"), out
    assert lines_with(out, "create user", t.upn["alice"], "cause: reactor sync --user"), out


async def test_a_user_in_no_configured_group_is_out_and_held_nowhere(tenant: Tenant) -> None:
    t = tenant
    r = await explain(t, t.upn["dave"])
    assert r["in_scope"] is False and r["access"] == "none"
    assert any("in no configured group" in reason for reason in r["reasons"]), r["reasons"]
    assert r["groups"] == [] and r["expected"] is None and r["actual"] is None and r["difference"] == []

    code, out, err = await t.reactor("explain", t.upn["dave"])
    assert code == 0, err
    assert lines_with(out, "OUT OF SCOPE", "in no configured group"), out
    assert lines_with(out, "Expected in AskCody: no user"), out


async def test_a_user_who_left_their_group_is_out_and_shown_still_active_in_askcody(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    code, _, err = await t.reactor("sync", "--user", "siobhan.o'brien@gmail.com")
    assert code == 0, err
    t.sim.remove_member(t.groups[ROLE], u["guest"])

    r = await explain(t, "siobhan.o'brien@gmail.com")
    assert r["entra_id"] == u["guest"] and r["in_scope"] is False
    assert any("in no configured group" in reason for reason in r["reasons"]), r["reasons"]
    assert r["expected"] == {"external_id": u["guest"], "user_name": t.upn["guest"], "active": False, "groups": []}
    assert r["actual"]["active"] is True and r["actual"]["groups"] == [ROLE]
    assert [d.split(" ", 1)[0] for d in r["difference"]] == ["remove", "disable"]


async def test_a_deleted_user_and_a_disabled_user_say_why(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    for name in ("bob", "erik"):
        code, _, err = await t.reactor("sync", "--user", t.upn[name])
        assert code == 0, err
    t.sim.soft_delete_user(u["bob"])

    r = await explain(t, t.upn["bob"])  # Graph no longer finds the UPN: the name last applied does
    assert r["entra_id"] == u["bob"] and r["entra"] is None and r["in_scope"] is False
    assert r["reasons"] == ["not in Entra (deleted, soft or for good, or never there)"]
    assert r["actual"]["active"] is True and r["expected"]["active"] is False

    r = await explain(t, t.upn["erik"])
    assert r["in_scope"] is True and r["access"] == "inactive"
    assert any("accountEnabled is false" in reason for reason in r["reasons"]), r["reasons"]
    assert r["expected"]["active"] is False and r["actual"]["active"] is False
    assert r["expected"]["groups"] == r["actual"]["groups"] == [ROLE]
    assert r["difference"] == []


async def test_a_dead_letter_for_the_user_is_shown(tenant: Tenant) -> None:
    t, u = tenant, tenant.users
    store = SQLiteStore(str(t.db))
    await store.open()
    try:
        letter = await store.add_dead_letter(
            "user", u["jens"], {"cause": "1 notification(s) (updated)", "operations": []},
            "ScimError: 409 uniqueness: userName exists", [{"at": 0.0, "error": "409", "type": "ScimError", "status": 409}],
        )
        await store.add_dead_letter("user", u["bob"], {"cause": "reconcile"}, "ScimError: other", [])
    finally:
        await store.close()

    r = await explain(t, "jens.hansen@contoso.local")
    assert [(d["id"], d["error"], d["cause"]) for d in r["dead_letters"]] == [
        (letter, "ScimError: 409 uniqueness: userName exists", "1 notification(s) (updated)")
    ]
    code, out, err = await t.reactor("explain", t.upn["jens"])
    assert code == 0, err
    assert lines_with(out, str(letter), "409 uniqueness"), out
