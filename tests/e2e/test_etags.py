"""ETags: a user the reactor provisioned, then edited by hand in AskCody, then changed in Entra. The
reactor's write, planned from the state it last applied, expects the version AskCody gave that state
(``If-Match``): AskCody refuses it (412), the reactor reads the user afresh and plans again, and
AskCody ends with Entra's change and without the hand edit of the attributes the reactor manages,
at once instead of at the next periodic reconcile. A scim2-server that does not advertise ETags gets
no ``If-Match``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphsim import GraphSimulator
from tests.e2e.helpers import ENTERPRISE, Proxied, add_user, eventually, idle, member_of, proxied_stack, ready, scope
from tests.support.tenant_names import RECEPTION


async def held(p: Proxied, entra_id: str) -> dict[str, Any]:
    user = await p.direct.askcody_user(entra_id)
    assert user is not None, f"AskCody holds no user {entra_id}"
    return user


async def provisioned_then_edited_by_hand(p: Proxied, sim: GraphSimulator, tenant_groups: dict[str, str]) -> tuple[str, str]:
    """A user the reactor provisioned, then edited in AskCody by hand; its Entra id and the version
    AskCody gave it before the edit."""
    await ready(p.stack)
    uid = add_user(sim, "nora.o'neill", display_name="Nora O'Neill")
    sim.add_member(tenant_groups[RECEPTION], uid)
    await eventually(lambda: member_of(p.direct, RECEPTION, uid), what="the user provisioned")
    await idle(p.stack)
    before = (await held(p, uid)).get("meta", {}).get("version")
    await p.server.by_hand((await held(p, uid))["id"], displayName="Changed by hand", active=False)
    return uid, before


def conditional(p: Proxied) -> list[tuple[str, str, str]]:
    """(method, path, If-Match) of each write that carried one, plain or in a bulk request."""
    out = []
    for r in p.proxy.log:
        if r.method == "POST" and r.path == "/Bulk":
            out += [(op["method"], op["path"], op["version"]) for op in r.json()["Operations"] if op.get("version")]
        elif r.header("If-Match"):
            out.append((r.method, r.path, str(r.header("If-Match"))))
    return out


async def test_a_change_in_entra_after_a_hand_edit_in_askcody_repairs_the_hand_edit_at_once(
    proxied: Proxied, sim: GraphSimulator, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    uid, version = await provisioned_then_edited_by_hand(p, sim, tenant_groups)
    assert version, "scim2-server gave the user no version"
    scim_id = (await held(p, uid))["id"]
    p.proxy.log.clear()

    sim.update_user(uid, employee_org_data={"costCenter": "CC-4711"})

    async def right() -> bool:
        user = await held(p, uid)
        return (user.get(ENTERPRISE, {}).get("costCenter") == "CC-4711" and user.get("displayName") == "Nora O'Neill"
                and user.get("active") is True)

    await eventually(right, what="the cost center applied and the hand edit undone, without a reconcile")
    await idle(p.stack)
    assert await member_of(p.direct, RECEPTION, uid)
    assert await p.stack.service.store.dead_letters() == []
    # The write planned from the state last applied expected the version from before the hand edit; refused,
    # the user was read afresh (one GET of it) and written again.
    assert conditional(p)[0] == ("PATCH", f"/Users/{scim_id}", version)
    assert p.proxy.count("GET", f"/Users/{scim_id}") == 1
    mapping = await p.stack.service.store.get_mapping("user", uid)
    assert mapping is not None and mapping.state.get("version") == (await held(p, uid))["meta"]["version"]


async def test_without_etags_advertised_no_write_carries_if_match(
    sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    async with proxied_stack(sim, scope(tenant_groups), tmp_path / "reactor.db", etag=False,
                             sync={"reconcile_interval_seconds": 3600.0}) as p:
        uid, version = await provisioned_then_edited_by_hand(p, sim, tenant_groups)
        assert version is None
        sim.update_user(uid, employee_org_data={"costCenter": "CC-4711"})

        async def applied() -> bool:
            return (await held(p, uid)).get(ENTERPRISE, {}).get("costCenter") == "CC-4711"

        await eventually(applied, what="the cost center applied")
        await idle(p.stack)
        assert conditional(p) == []
        assert await p.stack.service.store.dead_letters() == []
        # Nothing told the reactor of the hand edit: it stays until the periodic reconcile finds it.
        assert (await held(p, uid)).get("displayName") == "Changed by hand"
