"""One model-based convergence case: random Entra operations against a whole local stack, with
notification faults in the simulator and transient SCIM faults in a proxy, then quiescence and an
exact comparison of scim2-server with the oracle (:mod:`expected`).

Used by ``tests/proofs/test_proof_model.py`` (hypothesis picks the cases) and ``bench/convergence.py``
(seeded random cases). The reactor runs in-process (``local_stack``) with ``retry.TESTING`` so that
the client retries do not sleep; the dispatcher's own backoff between failed units is real.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from graphsim import GraphSimulator
from reactor import retry
from reactor.demo.stack import Stack, local_stack
from reactor.store.base import JournalItem
from tests.proofs.entra_ops import Op, TenantDriver, random_ops
from tests.support.eventually import eventually
from tests.support.expected import Oracle, describe, diff, read_askcody, rules_from
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import build_application
from tests.support.servers import serve_asgi

GROUPS = (("Facility Management", "role"), ("Reception Copenhagen", "reception"), ("Catering", "service_provider"))
NESTED = ("FM København", "Reception Nathold", "Catering Århus")
"""Groups outside the configuration: nested at the start (one two levels down), and moved by ops."""


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class ScimBurst:
    """The next ``times`` SCIM requests answer 503: more than one request's retries, so a whole unit fails."""

    times: int


@dataclass(frozen=True)
class LoseAnswer:
    """The next SCIM write reaches scim2-server, but its answer is lost (504)."""


Step = Op | Pause | ScimBurst | LoseAnswer


@dataclass(frozen=True)
class NotificationFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder: bool = False
    delay_seconds: float = 0.0
    scim_error_rate: float = 0.0
    """Share of SCIM requests answered 503 (absorbed by the client's retries)."""


MAX_BURSTS = 2
"""SCIM bursts per case: each fails a unit or two, and the dispatcher's backoff doubles with every
failure of the same unit (up to 60 s), so stacking many only makes a case slow, not harder."""


def capped(steps: tuple[Step, ...] | list[Step]) -> tuple[Step, ...]:
    """``steps`` without the SCIM bursts beyond the first :data:`MAX_BURSTS`."""
    out: list[Step] = []
    bursts = 0
    for step in steps:
        if isinstance(step, ScimBurst):
            bursts += 1
            if bursts > MAX_BURSTS:
                continue
        out.append(step)
    return tuple(out)


@dataclass(frozen=True)
class Case:
    users: int
    steps: tuple[Step, ...]
    faults: NotificationFaults
    seed: int = 0

    @property
    def operations(self) -> int:
        return sum(isinstance(s, Op) for s in self.steps)


@dataclass
class CaseResult:
    operations: int
    applied: int
    problems: list[str]
    dead_letters: int
    seconds_to_quiesce: float
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.dead_letters


def random_case(rng: random.Random, ops: int = 30) -> Case:
    """A case drawn from ``rng``: ops with pauses, SCIM bursts and lost answers among them, and faults."""
    steps: list[Step] = []
    for op in random_ops(rng, ops):
        steps.append(op)
        roll = rng.random()
        if roll < 0.15:
            steps.append(Pause(rng.uniform(0.02, 0.3)))
        elif roll < 0.2:
            steps.append(ScimBurst(rng.randint(7, 12)))
        elif roll < 0.25:
            steps.append(LoseAnswer())
    faults = NotificationFaults(
        drop_rate=rng.choice((0.0, 0.1, 0.3)),
        duplicate_rate=rng.choice((0.0, 0.2, 0.5)),
        reorder=rng.random() < 0.5,
        delay_seconds=rng.choice((0.0, 0.0, 0.2)),
        scim_error_rate=rng.choice((0.0, 0.05, 0.1)),
    )
    return Case(users=rng.randint(2, 8), steps=capped(steps), faults=faults, seed=rng.randrange(2**31))


def _writes(r: ProxiedRequest) -> bool:
    return r.method in ("POST", "PATCH", "DELETE")


async def quiesce(stack: Stack, timeout: float = 60.0) -> None:
    """Return once the simulator has nothing left to deliver, a reconcile started after that has run,
    and the reactor's queue is empty (everything the reconcile queued included)."""
    deadline = time.monotonic() + timeout
    dispatcher = stack.service.dispatcher
    while True:
        remaining = deadline - time.monotonic()
        await stack.sim.wait_idle(max(0.1, remaining))
        mark = time.time()
        item = JournalItem("reconcile", "all", mark, {"cause": "quiescence check"}, change_type="reconcile")
        await stack.service.enqueue([item])
        if not await dispatcher.wait_idle(max(0.1, deadline - time.monotonic())):
            raise TimeoutError(f"the reactor did not become idle within {timeout} s ({dispatcher.depth} objects pending)")
        if stack.sim.delivery.pending == 0 and (stack.engine.last_reconcile_at or 0) >= mark:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no quiescence within {timeout} s")


async def run_case(case: Case, workdir: Path) -> CaseResult:
    """Run ``case`` against a fresh stack in ``workdir``; report what differs from the oracle at quiescence."""
    with retry.testing():
        return await _run(case, workdir)


async def _run(case: Case, workdir: Path) -> CaseResult:
    rng = random.Random(case.seed)
    sim = GraphSimulator(token=secrets.token_urlsafe(12))
    sim.faults.seed(case.seed)
    sim.delivery.retry_max_delay = 0.5
    groups = {sim.add_group(display_name=f"Entra {name}"): (name, grants) for name, grants in GROUPS}
    sim.add_group(display_name="Not in scope")
    nested = [sim.add_group(display_name=f"Entra {name}") for name in NESTED]
    oracle = Oracle(rules_from(groups))
    configured = list(groups)
    driver = TenantDriver(sim, oracle, configured, salt=case.seed % 2**32 + 1, nested_groups=nested)
    driver.nest(configured[0], nested[0])
    driver.nest(nested[0], nested[1])
    driver.nest(configured[2], nested[2])
    driver.seed(case.users, rng)
    token = secrets.token_urlsafe(16)
    app = build_application(token)
    async with serve_asgi(app) as root:
        scim_url = root + "/v2"
        async with fault_proxy(scim_url) as proxy:
            async with local_stack(
                sim, groups, workdir / "reactor.db", scim_url=proxy.url, scim_token=token, scim_app=app,
                sync={"reconcile_interval_seconds": 3600.0},
            ) as stack:
                return await _play(case, stack, oracle, driver, proxy, scim_url, token, rng)


async def _play(
    case: Case, stack: Stack, oracle: Oracle, driver: TenantDriver, proxy: FaultProxy, scim_url: str, token: str,
    rng: random.Random,
) -> CaseResult:
    sim = stack.sim
    await eventually(lambda: len(sim.subscriptions) >= 2, "the reactor subscribes", 15)
    await quiesce(stack)
    start = oracle.expected(sim)
    problems = diff(start, await read_askcody(scim_url, token))
    if problems:
        return CaseResult(case.operations, 0, ["initial sync: " + p for p in problems], 0, 0.0)
    oracle.passed(start)

    f = case.faults
    sim.faults.drop_rate, sim.faults.duplicate_rate = f.drop_rate, f.duplicate_rate
    sim.faults.reorder, sim.faults.delay_seconds = f.reorder, f.delay_seconds
    if f.scim_error_rate:
        proxy.unavailable(10**9, when=lambda r: rng.random() < f.scim_error_rate)
    log: list[str] = []
    for step in case.steps:
        if isinstance(step, Op):
            done = driver.apply(step)
            if done:
                log.append(done)
        elif isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, ScimBurst):
            proxy.unavailable(step.times)
            log.append(f"SCIM: next {step.times} requests 503")
        else:
            proxy.lose_answer(1, when=_writes)
            log.append("SCIM: next write's answer lost")
        await asyncio.sleep(0)
    started = time.monotonic()
    await quiesce(stack)
    elapsed = time.monotonic() - started
    expected = oracle.expected(sim)
    problems = diff(expected, await read_askcody(scim_url, token))
    dead = len(await stack.service.store.dead_letters())
    if problems:
        log.append(describe(problems))
        log.extend(await _diagnose(stack, problems))
    return CaseResult(case.operations, len(driver.applied), problems, dead, elapsed, log)


async def _diagnose(stack: Stack, problems: list[str]) -> list[str]:
    """For each user named in ``problems``: what the reactor's store and a fresh plan say about it."""
    lines: list[str] = []
    users = {p.split()[1].rstrip(":") for p in problems if p.startswith("user ")}
    for uid in sorted(users):
        stored = sorted(await stack.service.store.groups_of(uid))
        entra = sorted(g for g, group in stack.sim.tenant.groups.items() if uid in group.members)
        nesting = {g: group.member_groups for g, group in stack.sim.tenant.groups.items() if group.member_groups}
        plan = await stack.engine.plan(uid)
        lines.append(
            f"diagnosis {uid}: store groups {stored}; Entra groups {entra}; Entra nesting {nesting}; "
            f"paths {plan.paths}; a fresh plan: {plan.operations}"
        )
    return lines

