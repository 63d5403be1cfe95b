"""Duplicate notifications cost neither delta rounds nor SCIM writes: 1,000 copies of one group's
notification, POSTed to the reactor over HTTP in a burst as Graph batches them, end in at most two
groups-delta rounds (the one running when they arrive and one after) and in exactly one SCIM write
per change; Graph delivering every notification twice writes each change once too."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.e2e.helpers import Proxied, add_user, eventually, idle, member_of, ready
from tests.support.tenant_names import RECEPTION, ROLE

DUPLICATES = 1_000
BATCH = 100


async def group_notification(p: Proxied, group_id: str) -> dict[str, Any]:
    """The item Graph sends when a member of ``group_id`` changed, with our subscription's clientState."""
    subs = [s for s in await p.stack.service.store.subscriptions() if s.resource == "groups"]
    assert len(subs) == 1
    sub = subs[0]
    tenant = p.stack.sim.tenant_id
    return {
        "subscriptionId": sub.id,
        "clientState": sub.client_state,
        "changeType": "updated",
        "resource": f"Groups/{group_id}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Group",
            "@odata.id": f"Groups/{group_id}",
            "id": group_id,
            "organizationId": tenant,
        },
        "tenantId": tenant,
    }


async def scim_group_id(p: Proxied, name: str) -> str:
    async with p.direct.scim_client() as c:
        found = (await c.get("/Groups", params={"filter": f'displayName eq "{name}"'})).json()["Resources"]
    assert len(found) == 1
    return str(found[0]["id"])


async def test_a_thousand_duplicate_group_notifications_cost_at_most_two_delta_rounds(
    proxied: Proxied, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    sim = p.stack.sim
    await ready(p.stack)
    sim.faults.drop_rate = 1.0  # Graph's own notification is lost: only the storm below tells the reactor
    uid = add_user(sim, "gina")
    sim.add_member(tenant_groups[ROLE], uid)
    await idle(p.stack)
    assert await p.direct.askcody_user(uid) is None

    rounds_before = sim.calls["groups_delta"]
    writes_before = p.writes()
    item = await group_notification(p, tenant_groups[ROLE])
    async with httpx.AsyncClient(base_url=p.stack.url, timeout=10) as client:
        answers = await asyncio.gather(
            *(client.post("/notifications", json={"value": [item] * BATCH}) for _ in range(DUPLICATES // BATCH))
        )
    assert [a.status_code for a in answers] == [202] * (DUPLICATES // BATCH)

    await eventually(lambda: member_of(p.direct, ROLE, uid))
    await idle(p.stack)
    rounds = sim.calls["groups_delta"] - rounds_before
    assert 1 <= rounds <= 2, f"{DUPLICATES} duplicate notifications cost {rounds} groups-delta calls"

    writes = {k: n - writes_before.get(k, 0) for k, n in p.writes().items() if n != writes_before.get(k, 0)}
    role_group = await scim_group_id(p, ROLE)
    assert writes == {("POST", "/Users"): 1, ("POST", "/Groups"): 1, ("PATCH", f"/Groups/{role_group}"): 1}, (
        f"SCIM writes were repeated: {writes}"
    )
    user = await p.direct.askcody_user(uid)
    assert user is not None and user["active"] is True


async def test_graph_sending_every_notification_twice_writes_each_change_once(
    proxied: Proxied, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    sim = p.stack.sim
    await ready(p.stack)
    sim.faults.duplicate_rate = 1.0
    users = [add_user(sim, name) for name in ("hal", "ida", "jon")]
    for uid in users:
        sim.add_member(tenant_groups[RECEPTION], uid)

    async def all_in() -> bool:
        return all([await member_of(p.direct, RECEPTION, uid) for uid in users])

    await eventually(all_in)
    await idle(p.stack)
    assert sim.delivery.stats["duplicated"] >= 2 * len(users)
    reception = await scim_group_id(p, RECEPTION)
    writes = p.writes()
    assert writes.pop(("POST", "/Users")) == len(users)
    assert writes.pop(("POST", "/Groups")) == 1
    # The members' adds, batched: one PATCH per user at most (several users may share one).
    assert writes.keys() == {("PATCH", f"/Groups/{reception}")}, writes
    assert 1 <= writes[("PATCH", f"/Groups/{reception}")] <= len(users), writes
