"""Work cut short at the worst moment, deterministically: each test stops the reactor's work where a
crash or a lost answer leaves the outcome unknown, and shows that what follows still converges.
(The random version of the same is the kill -9 proof; these pin the windows it found.)"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphsim import GraphSimulator
from reactor import log
from reactor.config import AskCodySettings, Secret
from reactor.demo.stack import Stack, local_stack
from reactor.ratelimit import TokenBucket
from reactor.scim.client import AskCodyClient
from reactor.store.base import JournalItem
from tests.proofs.entra_ops import TenantDriver
from tests.support.expected import Oracle, describe, diff, read_askcody, rules_from
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import build_application
from tests.support.servers import serve_asgi

GROUPS = (("Facility Management", "role"), ("Reception Copenhagen", "reception"), ("Catering", "service_provider"))


@pytest.fixture(autouse=True)
def _fast_retries(retry_testing: None) -> None:
    log.configure("warning")


@dataclass
class Setup:
    stack: Stack
    proxy: FaultProxy
    scim_url: str
    token: str
    groups: list[str]
    oracle: Oracle
    driver: TenantDriver

    async def converged(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            problems = diff(self.oracle.expected(self.stack.sim), await read_askcody(self.scim_url, self.token))
            if not problems:
                return
            if time.monotonic() > deadline:
                raise AssertionError(describe(problems))
            await asyncio.sleep(0.05)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sim = GraphSimulator(token="sim-token")
    groups = {sim.add_group(display_name=f"Entra {name}"): (name, grants) for name, grants in GROUPS}
    oracle = Oracle(rules_from(groups))
    driver = TenantDriver(sim, oracle, list(groups))
    token = secrets.token_urlsafe(16)
    app = build_application(token)
    async with serve_asgi(app) as root, fault_proxy(root + "/v2") as proxy:
        async with local_stack(
            sim, groups, tmp_path / "reactor.db", scim_url=proxy.url, scim_token=token, scim_app=app,
            sync={"reconcile_interval_seconds": 3600.0},
        ) as stack:
            s = Setup(stack, proxy, root + "/v2", token, list(groups), oracle, driver)
            deadline = time.monotonic() + 15
            while len(sim.subscriptions) < 2 or stack.engine.last_reconcile_at is None:
                assert time.monotonic() < deadline, "the reactor did not start"
                await asyncio.sleep(0.02)
            yield s


def failing_once(real: Callable[[Sequence[JournalItem]], Awaitable[None]], when: Callable[[Sequence[JournalItem]], bool],
                 hits: list[int]) -> Callable[[Sequence[JournalItem]], Awaitable[None]]:
    async def enqueue(items: Sequence[JournalItem]) -> None:
        if not hits and when(items):
            hits.append(1)
            raise RuntimeError("killed between the store and the journal")
        await real(items)

    return enqueue


async def test_a_groups_round_cut_short_before_its_users_are_journaled_is_completed(setup: Setup) -> None:
    """The round stored a deleted group and a removed member, then died before journaling the users
    they affect: the round runs again, reads the same changes (its deltaLink was not kept) and the
    users it affected (kept before the store changed) are still synced."""
    g1, g2, _ = setup.groups
    only_g1 = setup.driver.new_user([g1])
    both = setup.driver.new_user([g1, g2])
    only_g2 = setup.driver.new_user([g2])
    await setup.converged()
    setup.oracle.passed(setup.oracle.expected(setup.stack.sim))

    hits: list[int] = []
    setup.stack.engine.enqueue = failing_once(
        setup.stack.engine.enqueue, lambda items: any(i.kind == "user" for i in items), hits  # type: ignore[arg-type]
    )
    setup.stack.sim.delete_group(g1)
    setup.stack.sim.remove_member(g2, only_g2)
    setup.oracle.observe(setup.stack.sim)
    await setup.converged(timeout=20)
    assert hits, "the round must have been cut short once"
    expected = setup.oracle.expected(setup.stack.sim)
    assert expected.deprovisioned == {only_g1, only_g2} and set(expected.present) == {both}


async def test_a_user_create_with_an_unknown_outcome_is_deprovisioned_when_the_user_left_scope(setup: Setup) -> None:
    """AskCody created the user but the answer was lost and the retries failed; before the next
    attempt the user left every group. The next attempt must still find it and deprovision it."""
    g1 = setup.groups[0]
    sim = setup.stack.sim
    uid = setup.driver.new_user()
    lost: list[ProxiedRequest] = []

    def lose_and_leave(r: ProxiedRequest) -> bool:
        if r.method == "POST" and r.path == "/Users":
            lost.append(r)
            sim.remove_member(g1, uid)  # meanwhile, in Entra, the user leaves scope
            setup.oracle.observe(sim)
            return True
        return False

    setup.proxy.lose_answer(1, when=lose_and_leave)
    # The client's 5 further attempts fail too: the unit fails and is run again later.
    setup.proxy.unavailable(5, when=lambda _: bool(lost))
    sim.add_member(g1, uid)
    setup.oracle.observe(sim)
    await setup.converged()
    assert setup.proxy.faulted[("POST", "/Users")] == 6, "the create must have ended with an unknown outcome"
    user = (await read_askcody(setup.scim_url, setup.token)).by_external_id()[uid]
    assert len(user) == 1 and user[0].active is False


async def test_a_group_create_whose_answer_is_lost_creates_one_group(setup: Setup) -> None:
    """RFC 7643 makes no group attribute unique, so AskCody cannot refuse a second create: the retry
    must look for the group before posting again."""
    async with AskCodyClient(
        AskCodySettings(scim_url=setup.proxy.url, token=Secret(setup.token)), TokenBucket(1000)
    ) as client:
        setup.proxy.lose_answer(2, when=lambda r: r.method == "POST" and r.path == "/Groups")
        group = await client.ensure_group("7f1d2a52-5f7b-4f0e-9a53-3c2d1e0f9a11", "Canteen")
    groups = [g for g in (await read_askcody(setup.scim_url, setup.token)).groups if g.display_name == "Canteen"]
    assert [g.scim_id for g in groups] == [group.id]
    assert setup.proxy.count("POST", "/Groups") == 1
