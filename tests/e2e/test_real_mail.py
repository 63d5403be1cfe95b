"""Mail values that real directories hold reach AskCody as they are: hybrid users synced from
on-premises AD still carry ``.local`` domains, and other special-use or unusual domains exist. The
reactor must never refuse on its own a value that AskCody accepts (scim2-server does)."""

from __future__ import annotations

import pytest

from reactor.demo.stack import Stack
from tests.e2e.helpers import add_user, ready
from tests.support.eventually import eventually
from tests.support.tenant_names import ROLE

MAILS = (
    "anna.berg@corp.contoso.local",
    "ole.hansen@ad.fabrikam.internal",
    "d'angelo.ruiz+facilities@xn--rksmrgs-5wao1o.se",
    "mei.chen@museum.museum",
)


@pytest.mark.parametrize("mail", MAILS)
async def test_a_user_with_an_unusual_mail_domain_is_provisioned_with_it(
    stack: Stack, tenant_groups: dict[str, str], mail: str
) -> None:
    await ready(stack)
    uid = add_user(stack.sim, "anna", mail=mail)
    stack.sim.add_member(tenant_groups[ROLE], uid)

    async def provisioned() -> bool:
        user = await stack.askcody_user(uid)
        return user is not None and [e["value"] for e in user.get("emails", [])] == [mail]

    await eventually(provisioned, f"user with mail {mail} provisioned with it")
    assert await stack.service.store.dead_letters() == []

    changed = mail.replace("@", ".two@", 1)
    stack.sim.update_user(uid, mail=changed)

    async def updated() -> bool:
        user = await stack.askcody_user(uid)
        return user is not None and [e["value"] for e in user.get("emails", [])] == [changed]

    await eventually(updated, f"mail changed to {changed}")
