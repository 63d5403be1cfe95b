"""A tenant for the one-person verbs (``reactor sync --user``, ``reactor explain``): the Graph
simulator and scim2-server served by the test, and the ``reactor`` CLI run as a subprocess against
them, with no reactor serving (so that nobody is provisioned unless a command does it).

Configured: Facility Management (``FM staff``, role) and Reception (``Reception``, reception), with
``Reception CPH`` nested in Reception and ``Reception CPH nights`` nested in that (two levels down).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from graphsim import GraphSimulator, running_simulator
from reactor.store import SQLiteStore
from reactor.store.base import ObjectMapping
from tests.support.reactor_proc import write_config
from tests.support.scim_server import ScimServer, scim_server
from tests.support.tenant_names import RECEPTION, ROLE


@dataclass
class Tenant:
    sim: GraphSimulator
    scim: ScimServer
    config: Path
    db: Path
    groups: dict[str, str]
    """Name (ROLE, RECEPTION, "cph", "nights") → Entra group id."""
    users: dict[str, str]
    """Short name → Entra user id."""
    upn: dict[str, str]
    """Short name → userPrincipalName."""

    async def reactor(self, *args: str) -> tuple[int, str, str]:
        """Run ``python -m reactor ARGS --config FILE``; its exit code, stdout and stderr."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reactor", *args, "--config", str(self.config),
            cwd=self.db.parent, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.scim.url, headers={"Authorization": f"Bearer {self.scim.token}"})

    async def askcody(self) -> dict[str, Any]:
        """Everything scim2-server holds, as it answers over HTTP."""
        async with self.client() as c:
            users = (await c.get("/Users", params={"count": "1000"})).json().get("Resources", [])
            groups = (await c.get("/Groups", params={"count": "1000"})).json().get("Resources", [])
        return {"users": sorted(users, key=lambda u: u["id"]), "groups": sorted(groups, key=lambda g: g["id"])}

    async def memberships(self) -> dict[str, set[str]]:
        """AskCody group name → the externalIds of its members."""
        state = await self.askcody()
        ext = {u["id"]: u.get("externalId") or u["userName"] for u in state["users"]}
        return {g["displayName"]: {ext[m["value"]] for m in g.get("members") or []} for g in state["groups"]}

    async def mappings(self) -> list[ObjectMapping]:
        """Every user and group mapping the reactor's store holds."""
        store = SQLiteStore(str(self.db))
        await store.open()
        try:
            return await store.mappings("user") + await store.mappings("group")
        finally:
            await store.close()

    async def stored_groups(self, user_id: str) -> set[str]:
        """The groups the reactor's store holds the user as a direct member of."""
        store = SQLiteStore(str(self.db))
        await store.open()
        try:
            return await store.groups_of(user_id)
        finally:
            await store.close()


def add_person(sim: GraphSimulator, upn: str, display_name: str, **fields: Any) -> str:
    given, _, surname = display_name.partition(" ")
    values: dict[str, Any] = {
        "display_name": display_name, "given_name": given, "surname": surname or None, "mail": upn,
        "employee_org_data": {"costCenter": "CC-4711"},
    }
    values.update(fields)
    return sim.add_user(user_principal_name=upn, **values)


@contextlib.asynccontextmanager
async def person_tenant(tmp_path: Path) -> AsyncIterator[Tenant]:
    """The simulator with the groups above and these people, scim2-server empty, and a configuration:

    - ``alice``: in Reception CPH nights (Reception through two levels of nesting);
    - ``bob``: a direct member of FM staff;
    - ``guest``: an invited guest (``#EXT#`` UPN, Gmail address with an apostrophe) in FM staff;
    - ``jens``: a hybrid user (``.local`` mail) in Reception CPH;
    - ``erik``: disabled in Entra, in FM staff;
    - ``dave``: in no group.
    """
    sim = GraphSimulator(token="sim-token")
    groups = {ROLE: sim.add_group(display_name="FM staff"), RECEPTION: sim.add_group(display_name="Reception")}
    groups["cph"] = sim.add_group(display_name="Reception CPH")
    groups["nights"] = sim.add_group(display_name="Reception CPH nights")
    sim.add_member(groups[RECEPTION], groups["cph"])
    sim.add_member(groups["cph"], groups["nights"])
    upn = {
        "alice": "alice.ødegaard@contoso.com", "bob": "bob.martin@contoso.com",
        "guest": "siobhan.o'brien_gmail.com#EXT#@contoso.onmicrosoft.com", "jens": "jens.hansen@contoso.com",
        "erik": "erik.lund@contoso.com", "dave": "dave.smith@contoso.com",
    }
    users = {
        "alice": add_person(sim, upn["alice"], "Alice Ødegaard"),
        "bob": add_person(sim, upn["bob"], "Bob Martin"),
        "guest": add_person(sim, upn["guest"], "Siobhán O'Brien", mail="siobhan.o'brien@gmail.com", user_type="Guest"),
        "jens": add_person(sim, upn["jens"], "Jens Hansen", mail="jens.hansen@contoso.local", on_premises_sync_enabled=True),
        "erik": add_person(sim, upn["erik"], "Erik Lund", account_enabled=False),
        "dave": add_person(sim, upn["dave"], "Dave Smith"),
    }
    sim.add_member(groups["nights"], users["alice"])
    for name in ("bob", "guest", "erik"):
        sim.add_member(groups[ROLE], users[name])
    sim.add_member(groups["cph"], users["jens"])
    async with running_simulator(sim) as graph_url, scim_server() as scim:
        db = tmp_path / "reactor.db"
        config = write_config(
            tmp_path / "reactor.toml",
            {
                "graph": {"tenant_id": sim.tenant_id, "base_url": graph_url, "token": sim.token or ""},
                "askcody": {"scim_url": scim.url, "token": scim.token, "max_requests_per_second": 1000},
                "store": {"url": f"sqlite:///{db}"},
            },
            [
                {"id": groups[ROLE], "askcody_group": ROLE, "grants": "role"},
                {"id": groups[RECEPTION], "askcody_group": RECEPTION, "grants": "reception"},
            ],
        )
        yield Tenant(sim, scim, config, db, groups, users, upn)
