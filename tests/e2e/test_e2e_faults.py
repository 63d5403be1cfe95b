"""Faults end to end: the simulated tenant changes, the reactor syncs over real HTTP, and something in
between misbehaves. SCIM faults are injected by a fault proxy in front of scim2-server; Graph faults
by the simulator. Every test ends with scim2-server in the state Entra asks for."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from graphsim import GraphSimulator
from reactor import retry
from reactor.commands import replay_dead_letters
from reactor.demo.stack import Stack, local_stack
from reactor.metrics import RETRIES
from reactor.store.base import JournalItem
from tests.e2e.helpers import ENTERPRISE, Proxied, add_user, eventually, idle, matches, member_of, ready, scope
from tests.support.faultproxy import ProxiedRequest
from tests.support.page import Page
from tests.support.tenant_names import PROVIDER, RECEPTION, ROLE


def populate(sim: GraphSimulator, tenant_groups: dict[str, str]) -> tuple[dict[str, set[str]], dict[str, bool]]:
    """Four users over the three groups; returns the AskCody groups and users that should follow."""
    alice, bob, carol, dave = (add_user(sim, n) for n in ("alice", "bob", "carol", "dave"))
    for uid in (alice, bob, carol):
        sim.add_member(tenant_groups[ROLE], uid)
    sim.add_member(tenant_groups[RECEPTION], carol)
    sim.add_member(tenant_groups[PROVIDER], dave)
    groups = {ROLE: {alice, bob, carol}, RECEPTION: {carol}, PROVIDER: {dave}}
    return groups, {uid: True for uid in (alice, bob, carol, dave)}


def graph_retries() -> float:
    return float(RETRIES.labels("graph")._value.get())


# SCIM ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
async def test_a_scim_burst_of_503_or_429_converges_without_dead_letters(
    proxied: Proxied, tenant_groups: dict[str, str], status: int
) -> None:
    """A burst longer than one request's retries: the client retries, then the dispatcher runs the
    unit again later; nothing is dead-lettered and no user or group is created twice."""
    p = proxied
    await ready(p.stack)
    # More failures than every unit's request has attempts: at least one request runs out of retries
    # (four users and their groups round: at most four units write at once, whatever the workers).
    writing = min(p.stack.settings.sync.workers, 4)
    burst = writing * max(retry.DEFAULT_POLICY.attempts, p.stack.settings.sync.max_attempts) + 2
    if status == 503:
        first = p.proxy.unavailable(times=burst)
    else:
        first = p.proxy.throttle(times=burst, retry_after=1)
    then = p.proxy.unavailable(times=5, retry_after=1)  # 503 with Retry-After: throttling
    groups, users = populate(p.stack.sim, tenant_groups)

    await eventually(lambda: matches(p.direct, p.stack.sim, groups, users), timeout=25)
    await idle(p.stack)
    assert first.exhausted and then.exhausted
    assert sum(p.proxy.faulted.values()) == burst + 5
    assert await p.stack.service.store.dead_letters() == []
    assert p.stack.service.dispatcher.failures >= 1  # some unit outlived its retries and ran again later
    assert len(p.server.resources("User")) == 4
    assert len(p.server.resources("Group")) == 3
    user = await p.direct.askcody_user(next(iter(groups[PROVIDER])))
    assert user is not None and user[ENTERPRISE]["costCenter"] == "CC-100"


async def test_a_lost_answer_to_a_user_create_does_not_duplicate_the_user(
    proxied: Proxied, tenant_groups: dict[str, str]
) -> None:
    """AskCody created the user but the answer was lost (504): the retried create meets 409 and adopts."""
    p = proxied
    await ready(p.stack)
    lost = p.proxy.lose_answer(times=1, when=lambda r: r.method == "POST" and r.path == "/Users")
    uid = add_user(p.stack.sim, "erin")
    p.stack.sim.add_member(tenant_groups[ROLE], uid)

    await eventually(lambda: matches(p.direct, p.stack.sim, {ROLE: {uid}}, {uid: True}))
    await idle(p.stack)
    assert lost.exhausted
    assert p.proxy.count("POST", "/Users") == 2
    assert len(p.server.resources("User")) == 1
    assert await p.stack.service.store.dead_letters() == []


async def test_a_scim_400_is_dead_lettered_and_a_replay_repairs_askcody(
    proxied: Proxied, tenant_groups: dict[str, str]
) -> None:
    p = proxied
    store = p.stack.service.store
    await ready(p.stack)

    def creates_hank(r: ProxiedRequest) -> bool:
        return r.method == "POST" and r.path == "/Users" and (r.json() or {}).get("userName") == "hank@contoso.com"

    # A refusal of userName itself (not of an optional attribute the user could do without).
    cause = p.proxy.fail(400, times=1_000, when=creates_hank, scim_type="invalidValue", detail="userName is not allowed")
    uid = add_user(p.stack.sim, "hank")
    p.stack.sim.add_member(tenant_groups[ROLE], uid)

    async def dead_lettered() -> bool:
        return any(d.object_id == uid for d in await store.dead_letters())

    await eventually(dead_lettered, what="the dead letters")
    await idle(p.stack)
    letters = [d for d in await store.dead_letters() if d.object_id == uid]
    assert letters
    for d in letters:
        assert "400" in d.error and "invalidValue" in d.error
        assert [a["status"] for a in d.attempts] == [400]
        assert any(op["op"] == "create_user" for op in d.change["operations"])
    assert cause.hits == len(letters)  # permanent: not retried
    assert await p.direct.askcody_user(uid) is None

    cause.times = cause.hits  # the cause is removed (AskCody accepts the user now)
    await replay(p.stack, [d.id for d in letters])

    assert await store.dead_letters() == []
    assert await matches(p.direct, p.stack.sim, {ROLE: {uid}}, {uid: True})


async def test_a_refused_e_mail_leaves_the_user_provisioned_without_it_and_says_so(
    proxied: Proxied, tenant_groups: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    p = proxied
    await ready(p.stack)
    caplog.set_level(logging.INFO, logger="reactor")
    mail = "anna.berg@corp.contoso.local"

    def posts_the_mail(r: ProxiedRequest) -> bool:
        return r.method == "POST" and r.path == "/Users" and mail.encode() in r.body

    refusal = p.proxy.reject(when=posts_the_mail)
    uid = add_user(p.stack.sim, "anna.berg", display_name="Anna Berg", mail=mail)
    p.stack.sim.add_member(tenant_groups[ROLE], uid)

    async def provisioned() -> bool:
        user = await p.direct.askcody_user(uid)
        return user is not None and user.get("active") is True and await member_of(p.direct, ROLE, uid)

    await eventually(provisioned, what="the user provisioned although AskCody refused its e-mail once")
    await idle(p.stack)
    assert refusal.hits == 1
    warnings = [r.fields for r in caplog.records if _event(r) == "scim_attributes_refused"]  # type: ignore[attr-defined]
    assert warnings and warnings[0]["level"] == "warning" and warnings[0]["entra_id"] == uid
    assert 'emails[type eq "work"]' in warnings[0]["attributes"]
    assert uid in p.stack.engine.attribute_failures
    changes = [c for c in await p.stack.service.store.recent_changes(50) if c.entra_id == uid]
    assert any("AskCody refused" in c.what and "emails" in c.what for c in changes)
    page = Page()
    page.feed(await p.stack.service.status_html())
    failures = page.rows("failures")
    assert any(uid in row["where"] and "AskCody refused" in row["error"] for row in failures), failures
    assert await p.stack.service.store.dead_letters() == []

    # The refusal was of one request: the next sync of the user writes what was left out.
    p.stack.sim.update_user(uid, given_name="Anna-Sofie")

    async def complete() -> bool:
        user = await p.direct.askcody_user(uid)
        return user is not None and [e["value"] for e in user.get("emails", [])] == [mail]

    await eventually(complete, what="the e-mail written at the next sync")
    await idle(p.stack)
    assert uid not in p.stack.engine.attribute_failures


async def replay(stack: Stack, ids: list[int]) -> None:
    """Replay dead letters as ``reactor deadletters replay ID…`` does (its own store handle and clients)."""
    replayed, failed = await replay_dead_letters(stack.settings, ids)
    assert failed == []
    assert sorted(replayed) == sorted(ids)


# Graph ---------------------------------------------------------------------------------------------


async def test_graph_429_is_retried_after_its_retry_after(
    stack: Stack, tenant_groups: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await ready(stack)
    sim = stack.sim
    calls, retries, unit_failures = sim.calls.copy(), graph_retries(), stack.service.dispatcher.failures
    sim.throttle(2, retry_after=7, path_prefix="/v1.0/groups/delta")
    sim.throttle(3, retry_after=7, path_prefix="/v1.0/users/")
    caplog.set_level(logging.WARNING, logger="reactor")
    groups, users = populate(sim, tenant_groups)

    await eventually(lambda: matches(stack, sim, groups, users))
    await idle(stack)
    assert sim.faults.injections == []  # every throttled answer was met ...
    assert graph_retries() - retries == 5  # ... by a retry of the Graph client itself,
    assert stack.service.dispatcher.failures == unit_failures  # not by running the unit again
    waits = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "retrying"]
    waits = [w for w in waits if w["target"] == "graph"]
    assert len(waits) == 5 and all(w["wait_seconds"] == 7.0 and w["status"] == 429 for w in waits), waits
    assert sim.calls["groups_delta"] - calls["groups_delta"] >= 2 + 1
    throttled_reads = sim.calls["get_user"] - calls["get_user"] + sim.calls["users_delta"] - calls["users_delta"]
    assert throttled_reads >= 3 + len(users)


async def test_an_expired_delta_token_makes_the_reconcile_a_full_resync(
    stack: Stack, tenant_groups: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await ready(stack)
    sim = stack.sim
    alice, bob = add_user(sim, "alice"), add_user(sim, "bob")
    sim.add_member(tenant_groups[ROLE], alice)
    sim.add_member(tenant_groups[ROLE], bob)
    await eventually(lambda: matches(stack, sim, {ROLE: {alice, bob}}, {alice: True, bob: True}))
    await idle(stack)

    sim.faults.drop_rate = 1.0  # from here on the reactor hears nothing
    carol = add_user(sim, "carol")
    sim.add_member(tenant_groups[ROLE], carol)
    sim.remove_member(tenant_groups[ROLE], bob)
    sim.update_user(alice, display_name="Alice Renamed")
    sim.expire_delta_tokens()
    deltas = sim.calls["users_delta"], sim.calls["groups_delta"]
    caplog.set_level(logging.INFO, logger="reactor")
    await stack.service.enqueue([JournalItem("reconcile", "all", time.time(), {"cause": "test"}, change_type="reconcile")])

    expected = {ROLE: {alice, carol}}
    await eventually(lambda: matches(stack, sim, expected, {alice: True, bob: False, carol: True}))
    await idle(stack)
    assert stack.engine.last_reconcile_error is None
    # Each delta link was refused (410) and a full round followed.
    assert sim.calls["users_delta"] - deltas[0] >= 2
    assert sim.calls["groups_delta"] - deltas[1] >= 2
    done = [r.fields for r in caplog.records if _event(r) == "reconcile_done" and r.fields.get("cause") == "test"]  # type: ignore[attr-defined]
    assert done and done[-1]["full"] is True
    user = await stack.askcody_user(alice)
    assert user is not None and user["displayName"] == "Alice Renamed"


def _event(record: logging.LogRecord) -> Any:
    fields = getattr(record, "fields", None)
    return fields.get("event") if isinstance(fields, dict) else None


async def test_the_periodic_reconcile_repairs_dropped_notifications(
    sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    async with local_stack(sim, scope(tenant_groups), tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 2.0}) as stack:
        await ready(stack)
        alice = add_user(sim, "alice")
        sim.add_member(tenant_groups[RECEPTION], alice)
        await eventually(lambda: matches(stack, sim, {RECEPTION: {alice}}, {alice: True}))

        sim.faults.drop_rate = 1.0  # every notification from here on is lost
        delivered, dropped = len(sim.delivered), sim.delivery.stats["dropped"]
        bob = add_user(sim, "bob")
        sim.add_member(tenant_groups[RECEPTION], bob)
        sim.remove_member(tenant_groups[RECEPTION], alice)
        sim.update_user(bob, employee_org_data={"costCenter": "CC-200"})

        await eventually(lambda: matches(stack, sim, {RECEPTION: {bob}}, {alice: False, bob: True}), timeout=20)
        assert len(sim.delivered) == delivered
        assert sim.delivery.stats["dropped"] - dropped >= 4
        user = await stack.askcody_user(bob)
        assert user is not None and user[ENTERPRISE]["costCenter"] == "CC-200"
