"""Nested groups end to end: a configured group's grant reaches the users of the groups nested in it,
at any depth, within seconds of a change in Entra, and leaves them when their last path goes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from graphsim import GraphSimulator
from reactor.demo.stack import Stack, local_stack
from reactor.graph.reader import chunks
from reactor.sync.rounds import NESTING_KEY
from tests.e2e.helpers import add_user, all_users, idle, member_of, ready
from tests.support.eventually import eventually
from tests.support.tenant_names import PROVIDER, RECEPTION, ROLE

SECONDS = 10.0
"""How long a change in Entra may take to reach AskCody here."""


async def active(stack: Stack, uid: str) -> bool | None:
    """AskCody's ``active`` for the user; None when AskCody holds none."""
    user = await stack.askcody_user(uid)
    return None if user is None else bool(user["active"])


async def deprovisioned(stack: Stack, uid: str) -> bool:
    return await active(stack, uid) is False


async def granted(stack: Stack, group: str, uid: str) -> bool:
    return await active(stack, uid) is True and await member_of(stack, group, uid)


async def revoked(stack: Stack, group: str, uid: str) -> bool:
    return not await member_of(stack, group, uid)


async def test_a_user_two_levels_down_gets_the_grant_and_loses_it(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim, top = stack.sim, tenant_groups[ROLE]
    cph = sim.add_group(display_name="FM København")
    night = sim.add_group(display_name="FM København nathold")
    sim.add_member(top, cph)
    sim.add_member(cph, night)
    await ready(stack)

    søren = add_user(sim, "søren.østergaard", display_name="Søren Østergaard")
    sim.add_member(night, søren)
    await eventually(lambda: granted(stack, ROLE, søren), "the grant through two levels of nesting", SECONDS)
    plan = await stack.engine.plan(søren)
    assert plan.paths == {top: (top, cph, night)}

    sim.remove_member(night, søren)
    await eventually(lambda: revoked(stack, ROLE, søren), "the grant gone with the membership", SECONDS)
    await eventually(lambda: deprovisioned(stack, søren), "the user deprovisioned", SECONDS)


async def test_a_child_group_removed_from_its_parent_takes_its_users_out(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim, top = stack.sim, tenant_groups[ROLE]
    aarhus = sim.add_group(display_name="FM Aarhus")
    guest = add_user(
        sim, "o'neill_gmail.com#EXT#", display_name="Siobhán O'Neill", mail="o'neill@gmail.com"
    )
    local = add_user(sim, "jens.hansen", mail="jens.hansen@contoso.local")
    sim.add_member(top, aarhus)
    sim.add_member(aarhus, guest)
    sim.add_member(aarhus, local)
    sim.add_member(tenant_groups[RECEPTION], local)
    await ready(stack)
    await eventually(lambda: granted(stack, ROLE, guest), "the guest in scope through FM Aarhus", SECONDS)
    assert await member_of(stack, ROLE, local)

    sim.remove_member(top, aarhus)
    await eventually(lambda: revoked(stack, ROLE, local), "Facility Management gone with FM Aarhus", SECONDS)
    await eventually(lambda: deprovisioned(stack, guest), "the guest deprovisioned", SECONDS)
    assert await granted(stack, RECEPTION, local), "the direct Reception membership keeps the user"


async def test_a_deleted_child_group_takes_its_users_out(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim = stack.sim
    catering = sim.add_group(display_name="Catering Odense")
    await ready(stack)
    uid = add_user(sim, "mette.krogh")
    sim.add_member(catering, uid)
    sim.add_member(tenant_groups[PROVIDER], catering)
    await eventually(lambda: granted(stack, PROVIDER, uid), "the grant once the group is nested", SECONDS)

    sim.delete_group(catering)
    await eventually(lambda: deprovisioned(stack, uid), "the user deprovisioned with the group", SECONDS)
    assert not await member_of(stack, PROVIDER, uid)


async def test_a_cycle_of_groups_ends_and_its_members_are_in_scope_once(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim, top = stack.sim, tenant_groups[ROLE]
    a = sim.add_group(display_name="FM Nord")
    b = sim.add_group(display_name="FM Nord vikarer")
    sim.add_member(top, a)
    sim.add_member(a, b)
    sim.add_member(b, a)
    sim.add_member(b, top)  # back to the configured group
    first = add_user(sim, "ida.nielsen")
    sim.add_member(b, first)
    await ready(stack)  # the start-up reconcile walks the cycle
    await eventually(lambda: granted(stack, ROLE, first), "a member of the cycle in scope", SECONDS)

    second = add_user(sim, "ahmed.al-sayed", display_name="أحمد السيد")
    sim.add_member(a, second)
    await eventually(lambda: granted(stack, ROLE, second), "a change inside the cycle applied", SECONDS)
    await idle(stack)
    users = [u for u in await all_users(stack) if u.get("externalId") in (first, second)]
    assert len(users) == 2
    members = (await stack.askcody_groups())[ROLE]
    assert {first, second} <= members


async def test_a_diamond_keeps_the_grant_while_one_path_remains(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim, top, reception = stack.sim, tenant_groups[ROLE], tenant_groups[RECEPTION]
    left = sim.add_group(display_name="FM Vest")
    right = sim.add_group(display_name="FM Øst")
    shared = sim.add_group(display_name="FM Fælles")
    desk = sim.add_group(display_name="Reception - Fælles")
    for parent, child in ((top, left), (top, right), (left, shared), (right, shared), (reception, desk)):
        sim.add_member(parent, child)
    await ready(stack)
    uid = add_user(sim, "zoë.ångström", display_name="Zoë Ångström")
    sim.add_member(shared, uid)
    sim.add_member(desk, uid)
    await eventually(lambda: granted(stack, ROLE, uid), "the grant through the diamond", SECONDS)
    await eventually(lambda: granted(stack, RECEPTION, uid), "the Reception grant through another path", SECONDS)

    sim.remove_member(top, left)
    await idle(stack)
    assert await granted(stack, ROLE, uid), "FM Øst still nests FM Fælles in Facility Management"

    sim.remove_member(top, right)
    await eventually(lambda: revoked(stack, ROLE, uid), "the grant gone with the last path", SECONDS)
    assert await granted(stack, RECEPTION, uid), "the Reception grant is its own"


async def test_more_than_50_nested_groups_are_read_in_several_delta_queries(
    stack: Stack, tenant_groups: dict[str, str]
) -> None:
    sim, top = stack.sim, tenant_groups[ROLE]
    sites = [sim.add_group(display_name=f"FM site {i:02d}") for i in range(60)]
    for site in sites:
        sim.add_member(top, site)
    await ready(stack)
    uid = add_user(sim, "eva.lind")
    sim.add_member(sites[-1], uid)
    await eventually(lambda: granted(stack, ROLE, uid), "a member of the 60th nested group in scope", SECONDS)
    keys = [stack.engine.reader.groups_delta_key(chunk) for chunk in chunks(sites)]
    assert len(keys) == 2
    assert all([await stack.service.store.get_meta(key) for key in keys])


async def test_reactor_sync_walks_nested_groups(stack: Stack, tenant_groups: dict[str, str]) -> None:
    sim, top = stack.sim, tenant_groups[ROLE]
    await ready(stack)
    sim.faults.drop_rate = 1.0  # the reactor hears nothing: only reactor sync can find the change
    north = sim.add_group(display_name="FM Nord")
    temps = sim.add_group(display_name="FM Nord vikarer")
    sim.add_member(top, north)
    sim.add_member(north, temps)
    sim.add_member(temps, north)
    uid = add_user(sim, "chloé.dubois", display_name="Chloé Dubois")
    sim.add_member(temps, uid)

    plans = await stack.engine.full_plan()
    assert [(p.entra_id, p.paths) for p in plans] == [(uid, {top: (top, north, temps)})]
    assert await stack.askcody_user(uid) is None, "planning changes nothing"
    await stack.engine.full_sync()
    assert await granted(stack, ROLE, uid)


async def test_reactor_sync_takes_the_users_from_the_group_listings_without_a_read_each(
    stack: Stack, tenant_groups: dict[str, str]
) -> None:
    """Each user a full sync plans comes with its group's members listing (its properties selected
    there): no read per user, which would cost Graph a resource unit each out of the budget."""
    sim, top = stack.sim, tenant_groups[ROLE]
    await ready(stack)
    sim.faults.drop_rate = 1.0  # only reactor sync finds these
    site = sim.add_group(display_name="FM Århus")
    sim.add_member(top, site)
    # Members, a hybrid user synced from on-premises AD, and an invited guest, in several scripts.
    names = [("zoe.obrien", "Zoë O'Brien", {}), ("juergen.gross", "Jürgen Groß", {"on_premises_sync_enabled": True}),
             ("li.wei", "李伟", {}), ("ngozi.okafor", "Ngozi Okafor", {}), ("sven.odegard", "Sven Ødegård", {}),
             ("siobhan.o'brien_gmail.com#EXT#", "Siobhán O'Brien (Guest)", {"user_type": "Guest"})]
    people: dict[str, int] = {}
    for i in range(30):
        local, display, kind = names[i % len(names)]
        costs = {"costCenter": f"ÅR-{i}"}
        if kind.get("user_type") == "Guest":
            uid = sim.add_user(user_principal_name=f"{local.replace('#EXT#', f'.{i}#EXT#')}@contoso.onmicrosoft.com",
                               display_name=f"{display} {i}", mail=f"siobhan.obrien.{i}@gmail.com",
                               employee_org_data=costs, **kind)
        else:
            uid = add_user(sim, f"{local}.{i}", display_name=f"{display} {i}", employee_org_data=costs, **kind)
        people[uid] = i
    for uid, i in people.items():
        sim.add_member(top if i < 20 else site, uid)
    sim.calls.clear()

    await stack.engine.full_sync()

    assert sim.calls.get("get_user", 0) == 0, dict(sim.calls)
    assert sim.calls.get("batch", 0) == 0, dict(sim.calls)
    for uid, i in people.items():
        held = await stack.askcody_user(uid)
        assert held is not None and held["displayName"].endswith(f" {i}") and held["active"] is True
        assert held["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["costCenter"] == f"ÅR-{i}"
        assert await member_of(stack, ROLE, uid)


async def test_a_store_from_before_nested_groups_finds_the_existing_nesting(
    stack: Stack, tenant_groups: dict[str, str]
) -> None:
    sim, top, store = stack.sim, tenant_groups[ROLE], stack.service.store
    await ready(stack)
    sim.faults.drop_rate = 1.0
    site = sim.add_group(display_name="FM Esbjerg")
    uid = add_user(sim, "nanna.holm")
    sim.add_member(site, uid)
    sim.add_member(top, site)
    # A reactor from before nested groups read this round and kept its links, but no nesting.
    await stack.engine.reader.groups_delta()
    await store.set_meta(NESTING_KEY, None)

    await stack.engine.groups_round(cause="a group notification")
    await eventually(lambda: granted(stack, ROLE, uid), "the nesting found by starting the round over", SECONDS)


@pytest.fixture
async def direct_only_stack(sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    grants = {ROLE: "role", RECEPTION: "reception", PROVIDER: "service_provider"}
    async with local_stack(
        sim,
        {gid: (name, grants[name]) for name, gid in tenant_groups.items()},
        tmp_path / "reactor.db",
        direct_only=[tenant_groups[PROVIDER]],
        sync={"reconcile_interval_seconds": 3600.0},
    ) as s:
        yield s


async def test_nested_false_ignores_nested_members(direct_only_stack: Stack, tenant_groups: dict[str, str]) -> None:
    stack, sim, provider = direct_only_stack, direct_only_stack.sim, tenant_groups[PROVIDER]
    sub = sim.add_group(display_name="Catering Aalborg")
    before = add_user(sim, "lars.berg")
    sim.add_member(sub, before)
    sim.add_member(provider, sub)
    await ready(stack)
    later = add_user(sim, "anna.berg")
    sim.add_member(sub, later)
    direct = add_user(sim, "karin.berg")
    sim.add_member(provider, direct)
    await eventually(lambda: granted(stack, PROVIDER, direct), "the direct member provisioned", SECONDS)
    await idle(stack)
    assert await stack.askcody_user(before) is None
    assert await stack.askcody_user(later) is None
