"""The start-up reconcile's progress on the admin listener: ``/status.json`` and the status page
show it while the workers apply the users it queued (AskCody's request rate makes that take a few
seconds), then how it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from graphsim import GraphSimulator
from reactor.demo.stack import local_stack
from tests.support.eventually import eventually

USERS = 40


async def test_status_follows_the_start_up_reconcile_until_its_users_are_applied(
    sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    for i in range(USERS):
        uid = sim.add_user(user_principal_name=f"user{i}@contoso.com", display_name=f"User {i}", mail=f"user{i}@contoso.com")
        sim.add_member(tenant_groups["Facility Management"], uid)
    groups = {gid: (name, "role") for name, gid in tenant_groups.items()}
    async with (
        local_stack(sim, groups, tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 3600.0},
                    askcody={"max_requests_per_second": 25.0}) as stack,
        httpx.AsyncClient(base_url=stack.admin_url) as client,
    ):
        seen: list[dict[str, Any]] = []
        running: list[str] = []

        async def ended() -> bool:
            seen.append((await client.get("/status.json")).json()["reconcile"])
            if seen[-1]["running"] and seen[-1]["phase"] == "applying" and 0 < seen[-1]["done"] < USERS:
                running.append((await client.get("/")).text)
            return seen[-1]["finished_at"] is not None

        await eventually(ended, "the start-up reconcile's progress ended", timeout=60, interval=0.05)
        during = [s for s in seen if s["running"] and s["phase"] == "applying" and 0 < s["done"] < USERS]
        assert len(during) >= 3, seen  # seen while the workers applied the users
        assert all(s["total"] == USERS and s["rate_per_second"] and s["eta_seconds"] is not None for s in during), during
        assert [s["done"] for s in during] == sorted(s["done"] for s in during), during
        assert any('<p id="reconcile">start-up reconcile: applying ' in page and "/s, ETA " in page
                   and '<progress id="reconcile-bar" max="40"' in page for page in running)
        last = seen[-1]
        assert last["round"] == "start-up reconcile" and last["running"] is False and last["error"] is None, seen
        assert (last["done"], last["total"]) == (USERS, USERS), seen  # every queued user counted as applied
        page = (await client.get("/")).text
        assert '<p id="reconcile">Idle; start-up reconcile finished in ' in page
