"""A tenant as real directories hold it (:mod:`tests.support.tenant`: guests with ``#EXT#`` UPNs,
hybrid users at ``.local`` domains, names in seven scripts with quotes and apostrophes, unusual mail
domains, cost centers in an on-premises extension attribute, disabled accounts, groups with and
without ``askcody_group``) reaches scim2-server whole: every user in scope with its userName, work
e-mail, name, cost center, active flag and group memberships, as the oracle (:mod:`tests.support.expected`)
computes them from the tenant; nothing dead-lettered."""

from __future__ import annotations

from pathlib import Path

from graphsim import GraphSimulator
from reactor.demo.stack import Stack, local_stack
from reactor.scim.client import MEMBER_BATCH
from tests.e2e.helpers import holds, idle, ready
from tests.support.eventually import eventually
from tests.support.expected import Oracle, describe, diff, read_askcody
from tests.support.tenant import DEFAULT_GROUPS, SCRIPTS, Tenant, generate_tenant, kinds_of

SEED = 20_261_203
COST_CENTER = "onPremisesExtensionAttributes/extensionAttribute1"
FAST_SCIM = {"max_requests_per_second": 500.0}


async def converged(stack: Stack, oracle: Oracle, what: str, timeout: float = 30.0) -> None:
    """Wait until scim2-server holds exactly what the oracle expects; then the oracle counts it as passed."""
    problems: list[str] = []

    async def check() -> bool:
        nonlocal problems
        problems = diff(oracle.expected(stack.sim), await read_askcody(stack.scim_url, stack.scim_token))
        return not problems

    try:
        await eventually(check, what, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(problems)}") from None
    oracle.passed(oracle.expected(stack.sim))


def real_looking(tenant: Tenant) -> None:
    """The generated tenant holds what real ones do (so that this test exercises it)."""
    in_scope = [tenant.user(uid) for uid in sorted(tenant.in_scope())]
    assert {"member", "guest", "hybrid", "shared"} <= set(kinds_of(in_scope)), kinds_of(in_scope)
    assert set(SCRIPTS) <= {u.script for u in in_scope}
    assert any("#EXT#" in u.user_principal_name for u in in_scope)
    assert any((u.mail or "").endswith(".local") for u in in_scope)
    assert any("'" in (u.display_name or "") or '"' in (u.display_name or "") for u in in_scope)
    assert any(not u.account_enabled for u in in_scope)
    assert any(not g.askcody_group for g in tenant.configured) and any(g.askcody_group for g in tenant.configured)


async def test_a_real_looking_tenant_reaches_askcody_whole(tmp_path: Path) -> None:
    tenant = generate_tenant(SEED, 60, cost_center=COST_CENTER)
    real_looking(tenant)
    sim = GraphSimulator(token="sim-token")
    at_start, later = tenant.users[:40], tenant.users[40:]
    tenant.load(sim, at_start)
    oracle = Oracle(tenant.rules())
    oracle.observe(sim)
    async with local_stack(
        sim, tenant.scope(), tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 3600.0},
        attributes={"cost_center": COST_CENTER}, askcody=FAST_SCIM,
    ) as stack:
        await ready(stack)
        await converged(stack, oracle, "the start-up reconcile of 40 users")

        tenant.load(sim, later)  # joiners, by notification
        oracle.observe(sim)
        await converged(stack, oracle, "20 users joining by notification")

        in_scope = sorted(tenant.in_scope())
        guest = next(uid for uid in in_scope if tenant.user(uid).kind == "guest")
        hybrid = next(uid for uid in in_scope if tenant.user(uid).kind == "hybrid")
        sim.update_user(guest, account_enabled=not tenant.user(guest).account_enabled, display_name="Анна-Мария O'Neil")
        sim.update_user(hybrid, mail="ole.hansen+fm@corp.contoso.local", extension_attributes={1: "Økonomi/121"})
        unnamed = next(g for g in tenant.configured if not g.askcody_group)
        leaver = unnamed.members[0]
        sim.remove_member(unnamed.id, leaver)
        oracle.observe(sim)
        await converged(stack, oracle, "a guest, a hybrid user and a membership changed")

        askcody = await read_askcody(stack.scim_url, stack.scim_token)
        assert {g.display_name for g in askcody.groups} == {g.askcody_name for g in tenant.configured}
        assert len(askcody.users) == len(tenant.in_scope() | {leaver})
        assert await stack.service.store.dead_letters() == []


async def test_a_group_larger_than_a_membership_batch_reaches_askcody_whole(tmp_path: Path) -> None:
    size = MEMBER_BATCH + 50
    tenant = generate_tenant(SEED + 1, 20, groups=DEFAULT_GROUPS[:1], large_group=size)
    large = next(g for g in tenant.configured if len(g.members) == size)
    sim = GraphSimulator(token="sim-token")
    tenant.load(sim)
    oracle = Oracle(tenant.rules())
    oracle.observe(sim)
    async with local_stack(
        sim, tenant.scope(), tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 3600.0}, askcody=FAST_SCIM,
    ) as stack:
        await eventually(lambda: holds(stack.engine.last_reconcile_at is not None), "the start-up reconcile")
        await idle(stack, timeout=60.0)
        await converged(stack, oracle, f"a group of {size} members")
        groups = await stack.askcody_groups()
        assert len(groups[large.askcody_name]) == size
        assert await stack.service.store.dead_letters() == []
