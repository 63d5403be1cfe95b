"""The start-up reconcile's progress on the admin listener: ``/status.json`` and the status page
follow it until the workers applied every user it queued."""

from __future__ import annotations

from typing import Any

import httpx

from graphsim import GraphSimulator
from tests.support.tenant_names import Eventually, StackFactory

USERS = 12


async def test_status_follows_the_start_up_reconcile_until_its_users_are_applied(
    sim: GraphSimulator, tenant_groups: dict[str, str], make_stack: StackFactory, wait: Eventually
) -> None:
    for i in range(USERS):
        uid = sim.add_user(user_principal_name=f"user{i}@contoso.com", display_name=f"User {i}", mail=f"user{i}@contoso.com")
        sim.add_member(tenant_groups["Facility Management"], uid)
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.admin_url) as client:
        seen: list[dict[str, Any]] = []

        async def ended() -> bool:
            seen.append((await client.get("/status.json")).json()["reconcile"])
            return seen[-1]["finished_at"] is not None

        await wait(ended, "the start-up reconcile's progress ended")
        last = seen[-1]
        assert last["round"] == "start-up reconcile" and last["running"] is False and last["error"] is None, seen
        assert (last["done"], last["total"]) == (USERS, USERS), seen  # every queued user counted as applied
        assert all(s["done"] <= (s["total"] or 0) for s in seen if s["phase"] == "applying"), seen
        page = (await client.get("/")).text
        assert '<p id="reconcile">Idle; start-up reconcile finished in ' in page
