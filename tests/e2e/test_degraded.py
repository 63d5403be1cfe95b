"""No subscription can be created (Graph cannot reach public_url): serve keeps running, /readyz
says why, and the periodic reconcile keeps AskCody correct meanwhile.

The subscriptions check is reported but not fatal for readiness: an orchestrator that stops routing
to a not-ready pod would also stop Graph's validation handshake, and the reactor could never recover.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from graphsim import GraphSimulator
from reactor.demo.stack import free_port, local_stack
from tests.support.tenant_names import ROLE


async def test_unreachable_public_url_degrades_readiness_but_sync_goes_on(
    sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with local_stack(
        sim,
        {tenant_groups[ROLE]: (ROLE, "role")},
        tmp_path / "reactor.db",
        server={"public_url": dead},
        sync={"reconcile_interval_seconds": 1.0},
    ) as stack:
        async with httpx.AsyncClient(base_url=stack.admin_url, timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                r = await client.get("/readyz")
                checks = r.json()["checks"]
                if not checks["subscriptions"]["ok"] and "validation" in checks["subscriptions"]["reason"]:
                    break
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.1)
            assert r.status_code == 200
            assert (await client.get("/healthz")).status_code == 200
        assert sim.subscriptions == {}

        uid = sim.add_user(user_principal_name="kim@contoso.com", display_name="Kim", mail="kim@contoso.com")
        sim.add_member(tenant_groups[ROLE], uid)
        deadline = time.monotonic() + 20
        while (await stack.askcody_user(uid)) is None:
            assert time.monotonic() < deadline, "the periodic reconcile did not provision the user"
            await asyncio.sleep(0.1)
