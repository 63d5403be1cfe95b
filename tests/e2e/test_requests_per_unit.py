"""Writes without reads: once the reactor has provisioned a user, a change in Entra costs AskCody the
write and nothing else (planned from the state last applied, kept in the store). AskCody is read
again only when a write says that state is stale (the user was deleted there by hand), and the
periodic reconcile finds what was changed by hand in AskCody from one listing, and repairs it."""

from __future__ import annotations

from graphsim import GraphSimulator
from tests.e2e.helpers import ENTERPRISE, Proxied, add_user, all_users, eventually, idle, member_of, ready
from tests.support.tenant_names import RECEPTION


async def askcody_user(p: Proxied, entra_id: str) -> dict[str, object] | None:
    found = [u for u in await all_users(p.direct) if u.get("externalId") == entra_id]
    assert len(found) <= 1, found
    return found[0] if found else None


async def provisioned(p: Proxied, sim: GraphSimulator, group: str, name: str, **kw: object) -> str:
    uid = add_user(sim, name, **kw)
    sim.add_member(group, uid)
    await eventually(lambda: member_of(p.direct, RECEPTION, uid), what=f"{name} provisioned")
    await idle(p.stack)
    return uid


async def test_a_cost_center_change_of_a_provisioned_user_is_one_patch_and_no_read(
    proxied: Proxied, sim: GraphSimulator, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    await ready(p.stack)
    uid = await provisioned(p, sim, tenant_groups[RECEPTION], "søren.o'hara", mail="soren.ohara@contoso.com")
    before = p.proxy.requests.copy()
    sim.update_user(uid, employee_org_data={"costCenter": "CC-4711"})

    async def changed() -> bool:
        user = await askcody_user(p, uid)
        return user is not None and user.get(ENTERPRISE, {}).get("costCenter") == "CC-4711"  # type: ignore[attr-defined]

    await eventually(changed, what="the new cost center in AskCody")
    await idle(p.stack)
    sent = p.proxy.requests - before
    # The ServiceProviderConfig is read once per process, at the first write that could carry If-Match
    # (whether AskCody honours ETags): not a read of the user, nor one per change.
    assert p.proxy.count("GET", "/ServiceProviderConfig") <= 1
    del sent[("GET", "/ServiceProviderConfig")]
    assert dict(sent) == {("PATCH", f"/Users/{(await askcody_user(p, uid) or {})['id']}"): 1}, dict(sent)


async def test_a_user_deleted_by_hand_in_askcody_is_read_again_and_provisioned_anew(
    proxied: Proxied, sim: GraphSimulator, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    await ready(p.stack)
    uid = await provisioned(p, sim, tenant_groups[RECEPTION], "amélie.durand")
    gone = await askcody_user(p, uid)
    assert gone is not None
    async with p.direct.scim_client() as c:
        (await c.delete(f"/Users/{gone['id']}")).raise_for_status()
    sim.update_user(uid, display_name="Amélie Durand-Nkosi")

    async def back() -> bool:
        user = await askcody_user(p, uid)
        return user is not None and user["id"] != gone["id"] and user.get("displayName") == "Amélie Durand-Nkosi"

    await eventually(back, what="the user provisioned again")
    await eventually(lambda: member_of(p.direct, RECEPTION, uid), what="back in Reception")
    await idle(p.stack)
    assert await p.stack.service.store.dead_letters() == []


async def test_the_periodic_reconcile_repairs_what_was_changed_by_hand_in_askcody(
    proxied: Proxied, sim: GraphSimulator, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    await ready(p.stack)
    kept = await provisioned(p, sim, tenant_groups[RECEPTION], "jürgen.weiß")
    edited = await provisioned(p, sim, tenant_groups[RECEPTION], "nora.o'neill")
    also = await provisioned(p, sim, tenant_groups[RECEPTION], "chloé.ß-müller")
    await p.stack.engine.reconcile(cause="periodic reconcile")  # past the users' creation in the users delta
    await idle(p.stack)
    user = await askcody_user(p, edited)
    assert user is not None
    async with p.direct.scim_client() as c:
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "replace", "path": "displayName", "value": "Changed by hand"},
            {"op": "replace", "path": "active", "value": False}]}
        (await c.patch(f"/Users/{user['id']}", json=body)).raise_for_status()
    writes_before = p.writes()
    gets_before = p.proxy.count("GET")

    await p.stack.engine.reconcile(cause="periodic reconcile")

    async def repaired() -> bool:
        now = await askcody_user(p, edited)
        return now is not None and now.get("displayName") == "Nora.O'Neill" and now.get("active") is True

    await eventually(repaired, what="the hand edit undone")
    await idle(p.stack)
    writes = {k: n - writes_before.get(k, 0) for k, n in p.writes().items() if n != writes_before.get(k, 0)}
    assert writes == {("PATCH", f"/Users/{user['id']}"): 2}, writes  # the attributes, then active
    # One listing of the users, one read of the one group AskCody holds, and the fresh read of the drifted
    # user (the user, its groups): not a read per user.
    assert p.proxy.count("GET") - gets_before == 4
    assert (await askcody_user(p, kept) or {}).get("displayName") == "Jürgen.Weiß"
    assert await member_of(p.direct, RECEPTION, also)
