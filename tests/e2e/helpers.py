"""Helpers of the end-to-end tests: polling with a deadline, tenant shortcuts, and a stack whose SCIM
traffic goes through the fault proxy to a real scim2-server."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphsim import GraphSimulator
from reactor.demo.stack import Stack, local_stack
from tests.support.eventually import eventually
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.scim_server import ScimServer, scim_server
from tests.support.tenant_names import PROVIDER, RECEPTION, ROLE

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def holds(value: bool) -> bool:
    return value


async def ready(stack: Stack) -> None:
    """Wait until both subscriptions exist and the start-up reconcile ran."""
    await eventually(
        lambda: holds(len(stack.sim.subscriptions) == 2 and stack.engine.last_reconcile_at is not None), what="the reactor"
    )
    await idle(stack)


async def idle(stack: Stack, timeout: float = 15.0) -> None:
    """Wait until the reactor has nothing pending or in flight and the simulator nothing to deliver."""

    async def quiet() -> bool:
        count, _ = await stack.service.store.backlog()
        return stack.sim.delivery.pending == 0 and stack.service.dispatcher.depth == 0 and count == 0

    await eventually(quiet, timeout=timeout, what="the reactor's backlog")


def add_user(sim: GraphSimulator, name: str, **kw: Any) -> str:
    fields: dict[str, Any] = {
        "display_name": name.title(), "given_name": name.title(), "surname": "Tester",
        "mail": f"{name}@contoso.com", "employee_org_data": {"costCenter": "CC-100"},
    }
    fields.update(kw)
    return sim.add_user(user_principal_name=f"{name}@contoso.com", **fields)


async def member_of(stack: Stack, group: str, uid: str) -> bool:
    return uid in (await stack.askcody_groups()).get(group, set())


async def all_users(stack: Stack) -> list[dict[str, Any]]:
    """Every user scim2-server holds."""
    async with stack.scim_client() as c:
        r = await c.get("/Users", params={"count": "1000"})
        r.raise_for_status()
        users: list[dict[str, Any]] = r.json().get("Resources", [])
        return users


async def matches(stack: Stack, sim: GraphSimulator, expected: Mapping[str, set[str]], active: Mapping[str, bool]) -> bool:
    """AskCody holds exactly one user per Entra id in ``active`` with Entra's attributes and that
    ``active`` flag, and the AskCody groups in ``expected`` have exactly those members."""
    groups = await stack.askcody_groups()
    if any(groups.get(name, set()) != members for name, members in expected.items()):
        return False
    users = await all_users(stack)
    by_ext: dict[str, list[dict[str, Any]]] = {}
    for u in users:
        by_ext.setdefault(str(u.get("externalId")), []).append(u)
    for uid, want_active in active.items():
        found = by_ext.get(uid, [])
        if len(found) != 1 or found[0].get("active") is not want_active:
            return False
        entra = sim.get_user(uid)
        if entra is not None and found[0].get("userName") != entra["userPrincipalName"]:
            return False
        if entra is not None and found[0].get("displayName") != entra.get("displayName"):
            return False
    return True


@dataclass
class Proxied:
    """A stack whose SCIM requests go through ``proxy`` to ``server``; ``direct`` reads scim2-server
    without the proxy (so that the test's own reads neither meet faults nor count)."""

    stack: Stack
    proxy: FaultProxy
    server: ScimServer
    direct: Stack

    def writes(self) -> dict[tuple[str, str], int]:
        """SCIM writes seen by the proxy, by (method, path): the operations of a ``POST /Bulk`` count
        as the writes they carry, whichever way the reactor sent them."""
        out: Counter[tuple[str, str]] = Counter()
        for r in self.proxy.log:
            if r.method == "GET":
                continue
            if r.method == "POST" and r.path == "/Bulk":
                out.update((str(op["method"]), str(op["path"])) for op in (r.json() or {}).get("Operations", []))
            else:
                out[(r.method, r.path)] += 1
        return dict(out)


@contextlib.asynccontextmanager
async def proxied_stack(
    sim: GraphSimulator, groups: Mapping[str, tuple[str, str]], store_path: Path, *, etag: bool = True,
    **overrides: Mapping[str, Any],
) -> AsyncIterator[Proxied]:
    """scim2-server, the fault proxy in front of it, and the reactor and simulator around them
    (``etag=False``: a scim2-server that does not version its resources)."""
    async with scim_server(etag=etag) as server, fault_proxy(server.url) as proxy:
        running = local_stack(sim, groups, store_path, scim_url=proxy.url, scim_token=server.token, **overrides)  # type: ignore[arg-type]
        async with running as stack:
            yield Proxied(stack, proxy, server, dataclasses.replace(stack, scim_url=server.url))


GRANTS = {ROLE: "role", RECEPTION: "reception", PROVIDER: "service_provider"}


def scope(tenant_groups: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The mapping of the tenant's three groups, as ``proxied_stack`` and ``local_stack`` take it."""
    return {gid: (name, GRANTS[name]) for name, gid in tenant_groups.items()}
