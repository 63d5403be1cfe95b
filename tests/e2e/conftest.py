"""End-to-end fixtures: the Graph simulator, the real scim2-server and the reactor, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from graphsim import GraphSimulator
from reactor import log
from reactor.demo.stack import Stack, local_stack
from tests.e2e.helpers import Proxied, proxied_stack, scope
from tests.support.tenant_names import PROVIDER, RECEPTION, ROLE


@pytest.fixture(autouse=True)
def _fast_retries(retry_testing: None) -> None:
    log.configure("info")


@pytest.fixture
def sim() -> GraphSimulator:
    return GraphSimulator(token="sim-token")


@pytest.fixture
def tenant_groups(sim: GraphSimulator) -> dict[str, str]:
    return {
        ROLE: sim.add_group(display_name="FM staff"),
        RECEPTION: sim.add_group(display_name="Reception CPH"),
        PROVIDER: sim.add_group(display_name="Catering crew"),
    }


@pytest.fixture
async def stack(sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    grants = {ROLE: "role", RECEPTION: "reception", PROVIDER: "service_provider"}
    async with local_stack(
        sim,
        {gid: (name, grants[name]) for name, gid in tenant_groups.items()},
        tmp_path / "reactor.db",
        sync={"reconcile_interval_seconds": 3600.0},
    ) as s:
        yield s


@pytest.fixture
async def proxied(sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path) -> AsyncIterator[Proxied]:
    """The stack with a fault proxy in front of scim2-server (``p.proxy``), reconcile hourly."""
    async with proxied_stack(sim, scope(tenant_groups), tmp_path / "reactor.db",
                             sync={"reconcile_interval_seconds": 3600.0}) as p:
        yield p
