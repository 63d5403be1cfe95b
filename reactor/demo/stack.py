"""A whole installation on loopback: the Graph simulator (the tenant), scim2-server (AskCody) and the
reactor between them, all over real HTTP. ``reactor demo`` runs it; the end-to-end tests use it too."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from graphsim import GraphSimulator, running_simulator
from graphsim.server import serving
from reactor.app import create_app
from reactor.config import GroupMapping, Secret, Settings, validate, with_overrides
from reactor.demo.askcody import build_scim_application
from reactor.service import Service
from reactor.store import SQLiteStore
from reactor.sync.engine import SyncEngine
from reactor.wiring import build_service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The running pieces and how to reach them."""

    sim: GraphSimulator
    graph_url: str
    scim_url: str
    scim_token: str
    scim_app: Any
    url: str
    """The public listener (the webhooks, ``/healthz``)."""
    admin_url: str
    """The admin listener (status page, ``/status.json``, ``/metrics``, ``/readyz``)."""
    service: Service
    engine: SyncEngine
    settings: Settings

    def scim_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.scim_url, headers={"Authorization": f"Bearer {self.scim_token}"}, timeout=10)

    async def askcody_user(self, entra_id: str) -> dict[str, Any] | None:
        """The AskCody user whose externalId is ``entra_id`` (None when there is none)."""
        async with self.scim_client() as c:
            r = await c.get("/Users", params={"filter": f'externalId eq "{entra_id}"'})
            r.raise_for_status()
            found = r.json().get("Resources", [])
            return found[0] if found else None

    async def askcody_groups(self) -> dict[str, set[str]]:
        """AskCody group displayName → the externalIds of its member users."""
        async with self.scim_client() as c:
            groups = (await c.get("/Groups", params={"count": "1000"})).json().get("Resources", [])
            users = (await c.get("/Users", params={"count": "1000"})).json().get("Resources", [])
        ext = {u["id"]: u.get("externalId") for u in users}
        return {g["displayName"]: {ext.get(m["value"]) or m["value"] for m in g.get("members", []) or []} for g in groups}


@contextlib.asynccontextmanager
async def local_stack(
    sim: GraphSimulator,
    groups: Mapping[str, tuple[str, str]],
    store_path: Path | str,
    *,
    port: int = 0,
    scim_app: Any = None,
    scim_url: str | None = None,
    scim_token: str | None = None,
    direct_only: Collection[str] = (),
    **overrides: Mapping[str, Any],
) -> AsyncIterator[Stack]:
    """Run the simulator, scim2-server (unless ``scim_url`` names another target) and the reactor.

    ``groups`` maps the Entra group id to ``(askcody_group, grants)``; the groups in ``direct_only``
    get ``nested = false``; ``overrides`` replace settings per section (e.g.
    ``sync={"reconcile_interval_seconds": 5}``).
    """
    token = scim_token or secrets.token_urlsafe(16)
    app = scim_app if scim_app is not None else build_scim_application(token)
    async with contextlib.AsyncExitStack() as stack:
        graph_url = await stack.enter_async_context(running_simulator(sim))
        if scim_url is None:
            scim_root = await stack.enter_async_context(serving(app))
            scim_url = scim_root + "/v2"
        reactor_port = port or free_port()
        admin_port = free_port()
        url = f"http://127.0.0.1:{reactor_port}"
        base = with_overrides(
            Settings(),
            server={"host": "127.0.0.1", "port": reactor_port, "public_url": url, "admin_port": admin_port},
            graph={"tenant_id": sim.tenant_id, "base_url": graph_url, "token": Secret(sim.token or "")},
            askcody={"scim_url": scim_url, "token": Secret(token)},
            store={"url": f"sqlite:///{store_path}"},
        )
        if overrides:
            base = with_overrides(base, **overrides)
        settings = validate(
            Settings(
                server=base.server, graph=base.graph, askcody=base.askcody, store=base.store, sync=base.sync,
                subscriptions=base.subscriptions, attributes=base.attributes,
                groups=tuple(GroupMapping(id=gid, askcody_group=name, grants=grants,  # type: ignore[arg-type]
                                          nested=gid not in direct_only)
                             for gid, (name, grants) in groups.items()),
            )
        )
        service, engine = build_service(settings, SQLiteStore(str(store_path)))
        # The uvicorn helper runs without lifespan: start and stop the service around it ourselves.
        reactor_app = create_app(service)
        await stack.enter_async_context(serving(reactor_app.public, "127.0.0.1", reactor_port))
        admin_url = await stack.enter_async_context(serving(reactor_app.admin, "127.0.0.1", admin_port))
        await service.start()
        stack.push_async_callback(service.stop)
        yield Stack(sim, graph_url, scim_url, token, app, url, admin_url, service, engine, settings)
