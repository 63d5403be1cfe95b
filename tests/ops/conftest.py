"""Operations fixtures: a whole installation on loopback (Graph simulator, scim2-server, reactor over
real HTTP), and helpers to make a change flow from Entra to AskCody and to wait for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from graphsim import GraphSimulator
from reactor import log
from reactor.demo.stack import Stack, local_stack
from tests.support.eventually import eventually
from tests.support.tenant_names import Eventually, StackFactory

GROUPS = {"Facility Management": "role", "Reception Copenhagen": "reception"}



@pytest.fixture(autouse=True)
def _fast_retries(retry_testing: None) -> None:
    log.configure("warning")


@pytest.fixture
def sim() -> GraphSimulator:
    return GraphSimulator(token="sim-token")


@pytest.fixture
def tenant_groups(sim: GraphSimulator) -> dict[str, str]:
    """AskCody group name -> the Entra group id in scope."""
    return {name: sim.add_group(display_name=f"{name} (Entra)") for name in GROUPS}


@pytest.fixture
def wait() -> Eventually:
    return eventually


@pytest.fixture
def make_stack(sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path) -> StackFactory:
    """``async with make_stack(**local_stack_kwargs) as stack``: a started stack whose subscriptions are
    live and whose start-up reconcile ran."""

    @contextlib.asynccontextmanager
    async def factory(**kwargs: Any) -> AsyncIterator[Stack]:
        groups = {gid: (name, GROUPS[name]) for name, gid in tenant_groups.items()}
        async with local_stack(
            sim, groups, tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 3600.0}, **kwargs
        ) as stack:

            async def settled() -> bool:
                return len(stack.sim.subscriptions) == 2 and stack.engine.last_reconcile_at is not None

            await eventually(settled, "subscriptions created and the start-up reconcile done")
            yield stack

    return factory


@pytest.fixture
async def stack(make_stack: StackFactory) -> AsyncIterator[Stack]:
    async with make_stack() as s:
        yield s


@pytest.fixture
def provision(tenant_groups: dict[str, str]) -> Callable[[Stack, str, str], Awaitable[str]]:
    """Add a new Entra user to a group in scope; return its id once AskCody holds it in that group."""

    async def add(stack: Stack, name: str, group: str = "Facility Management") -> str:
        uid = stack.sim.add_user(
            user_principal_name=f"{name}@contoso.com", display_name=name.title(), given_name=name.title(),
            surname="Tester", mail=f"{name}@contoso.com",
        )
        stack.sim.add_member(tenant_groups[group], uid)

        async def in_askcody() -> bool:
            return uid in (await stack.askcody_groups()).get(group, set())

        await eventually(in_askcody, f"{name} provisioned in AskCody group {group!r}")
        return uid

    return add
