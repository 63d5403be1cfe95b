"""The status page names people by their UPN, also once Entra no longer knows them.

After a hard delete, Graph answers 404 for the user: the reactor deprovisions it from what it
applied last (the mapping's state), and the recent changes must still say who it was, not a GUID.
"""

from __future__ import annotations

import html
from typing import Any

from reactor.demo.stack import Stack
from tests.e2e.helpers import add_user, idle, member_of, ready
from tests.support.eventually import eventually
from tests.support.tenant_names import ROLE

GUEST_UPN = "maria.o'neil_fabrikam.com#EXT#@contoso.onmicrosoft.com"


async def _changes_of(stack: Stack, uid: str) -> list[dict[str, Any]]:
    status = await stack.service.status()
    return [c for c in status["recent_changes"] if c["entra_id"] == uid]


async def test_a_hard_deleted_user_is_named_by_upn_on_the_status_page(stack: Stack, tenant_groups: dict[str, str]) -> None:
    await ready(stack)
    guest = stack.sim.add_user(user_principal_name=GUEST_UPN, display_name="María O'Neil (Fabrikam)",
                               given_name="María", surname="O'Neil", mail="maria.oneil@fabrikam.com",
                               employee_org_data={"costCenter": "CC-7001"})
    other = add_user(stack.sim, "zhang.wei", display_name="张伟")
    for uid in (guest, other):
        stack.sim.add_member(tenant_groups[ROLE], uid)
    await eventually(lambda: member_of(stack, ROLE, guest), "the guest provisioned")
    await idle(stack)
    provisioned = len(await _changes_of(stack, guest))

    stack.sim.hard_delete_user(guest)

    async def deprovisioned() -> bool:
        u = await stack.askcody_user(guest)
        return u is not None and u["active"] is False and not await member_of(stack, ROLE, guest)

    await eventually(deprovisioned, "the hard-deleted guest deprovisioned")
    await idle(stack)
    changes = await _changes_of(stack, guest)
    assert len(changes) > provisioned, "the deprovisioning is not among the recent changes"
    for change in changes:
        assert change["who"] == GUEST_UPN, change
        assert f"user {guest}" not in change["what"], change
    deprovisioning = changes[0]["what"]  # newest first
    assert deprovisioning.startswith(f"disable user {GUEST_UPN}"), deprovisioning
    page = await stack.service.status_html()
    assert f"<td>{html.escape(GUEST_UPN)}</td><td>{html.escape(deprovisioning)}</td>" in page
    assert f"<td>{guest}</td>" not in page and f"user {guest}" not in page, "the page names the guest by its GUID"
