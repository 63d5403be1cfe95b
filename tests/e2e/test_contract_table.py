"""Each row of the contract's table "What a change in Entra does in AskCody", end to end: the
simulated tenant changes, Graph notifies the reactor, and scim2-server ends in the expected state."""

from __future__ import annotations

from typing import Any

import pytest

from graphsim import GraphSimulator
from reactor.demo.stack import Stack
from tests.support.eventually import eventually
from tests.support.tenant_names import PROVIDER, RECEPTION, ROLE

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def ready(stack: Stack) -> None:
    """Wait until subscriptions exist and the start-up reconcile ran."""
    await eventually(lambda: _true(len(stack.sim.subscriptions) == 2 and stack.engine.last_reconcile_at is not None))


async def _true(v: bool) -> bool:
    return v


def add_user(sim: GraphSimulator, name: str, **kw: Any) -> str:
    return sim.add_user(
        user_principal_name=f"{name}@contoso.com", display_name=name.title(), given_name=name.title(),
        surname="Tester", mail=f"{name}@contoso.com", employee_org_data={"costCenter": "CC-100"}, **kw,
    )


async def member_of(stack: Stack, group: str, uid: str) -> bool:
    return uid in (await stack.askcody_groups()).get(group, set())


async def test_user_added_to_a_group_in_scope_is_created_and_added(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "alice")
    stack.sim.add_member(tenant_groups[ROLE], uid)

    async def done() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and await member_of(stack, ROLE, uid)

    await eventually(done)
    user = await stack.askcody_user(uid)
    assert user is not None
    assert user["userName"] == "alice@contoso.com"
    assert user["active"] is True
    assert user["name"]["givenName"] == "Alice"
    assert user["name"]["familyName"] == "Tester"
    assert user["displayName"] == "Alice"
    assert user["emails"][0]["value"] == "alice@contoso.com"
    assert user[ENTERPRISE]["costCenter"] == "CC-100"


async def test_user_added_to_a_further_group_is_added_there(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "bob")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.add_member(tenant_groups[RECEPTION], uid)
    await eventually(lambda: member_of(stack, RECEPTION, uid))
    assert await member_of(stack, ROLE, uid)


async def test_user_removed_from_one_group_keeps_the_others(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "carol")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    stack.sim.add_member(tenant_groups[PROVIDER], uid)
    await eventually(lambda: member_of(stack, PROVIDER, uid))
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.remove_member(tenant_groups[PROVIDER], uid)

    async def done() -> bool:
        return not await member_of(stack, PROVIDER, uid)

    await eventually(done)
    assert await member_of(stack, ROLE, uid)
    user = await stack.askcody_user(uid)
    assert user is not None and user["active"] is True


async def test_user_removed_from_the_last_group_is_deprovisioned(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "dave")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.remove_member(tenant_groups[ROLE], uid)

    async def done() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u["active"] is False and not await member_of(stack, ROLE, uid)

    await eventually(done)


@pytest.mark.parametrize("enabled", [False, True])
async def test_account_enabled_maps_to_active_and_memberships_are_kept(
    stack: Stack, tenant_groups: dict[str, str], enabled: bool
) -> None:
    await ready(stack)
    uid = add_user(stack.sim, f"erin{int(enabled)}")
    stack.sim.add_member(tenant_groups[RECEPTION], uid)
    await eventually(lambda: member_of(stack, RECEPTION, uid))
    stack.sim.update_user(uid, account_enabled=False)

    async def inactive() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u["active"] is False

    await eventually(inactive)
    assert await member_of(stack, RECEPTION, uid)
    if enabled:
        stack.sim.update_user(uid, account_enabled=True)

        async def active() -> bool:
            u = await stack.askcody_user(uid)
            return u is not None and u["active"] is True

        await eventually(active)
        assert await member_of(stack, RECEPTION, uid)


async def test_soft_delete_deprovisions_and_restore_provisions_again(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "frank")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.soft_delete_user(uid)

    async def inactive() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u["active"] is False

    await eventually(inactive)
    stack.sim.restore_user(uid)

    async def back() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u["active"] is True and await member_of(stack, ROLE, uid)

    await eventually(back)


async def test_permanent_delete_deprovisions(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "grace")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.hard_delete_user(uid)

    async def done() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u["active"] is False and not await member_of(stack, ROLE, uid)

    await eventually(done)


async def test_attribute_changes_are_replaced(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "heidi")
    stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, uid))
    stack.sim.update_user(
        uid, employee_org_data={"costCenter": "CC-200"}, display_name="Heidi H", surname="Hansen",
        mail="heidi.h@contoso.com", user_principal_name="heidi.h@contoso.com",
    )

    async def done() -> bool:
        u = await stack.askcody_user(uid)
        return u is not None and u.get(ENTERPRISE, {}).get("costCenter") == "CC-200" and u["userName"] == "heidi.h@contoso.com"

    await eventually(done)
    u = await stack.askcody_user(uid)
    assert u is not None
    assert u["displayName"] == "Heidi H"
    assert u["name"]["familyName"] == "Hansen"
    assert u["emails"][0]["value"] == "heidi.h@contoso.com"


async def test_group_in_scope_deleted_members_lose_it(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    only = add_user(stack.sim, "ivan")
    both = add_user(stack.sim, "judy")
    stack.sim.add_member(tenant_groups[PROVIDER], only)
    stack.sim.add_member(tenant_groups[PROVIDER], both)
    stack.sim.add_member(tenant_groups[ROLE], both)
    await eventually(lambda: member_of(stack, PROVIDER, only))
    await eventually(lambda: member_of(stack, PROVIDER, both))
    await eventually(lambda: member_of(stack, ROLE, both))
    stack.sim.delete_group(tenant_groups[PROVIDER])

    async def done() -> bool:
        u = await stack.askcody_user(only)
        groups = await stack.askcody_groups()
        return u is not None and u["active"] is False and not groups.get(PROVIDER)

    await eventually(done)
    j = await stack.askcody_user(both)
    assert j is not None and j["active"] is True
    assert await member_of(stack, ROLE, both)
