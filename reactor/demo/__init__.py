"""``reactor demo``: the whole flow on this machine with no tenant, no secret and no network.

A simulated Entra tenant (the Graph simulator), an embedded AskCody (scim2-server) and the reactor
run on loopback ports. The tenant is seeded with role, reception and service-provider groups and
users with cost centers; then each row of the contract's table is played and the time AskCody took
to reflect it is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactor import log, retry

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
STEP_TIMEOUT = 20.0


@dataclass
class Step:
    title: str
    change: Callable[[], None]
    reflected: Callable[[], Awaitable[bool]]


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _wait(check: Callable[[], Awaitable[bool]], timeout: float, stop: asyncio.Event) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout and not stop.is_set():
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM (``docker stop``, ``kill``, a service manager) both set ``stop``: the demo
    then closes its stack and exits, whatever it was doing."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def play(once: bool, port: int, workdir: Path) -> int:
    """Play the steps; without ``once``, keep running until SIGINT or SIGTERM. A signal while the
    steps are played stops the demo cleanly too: exit 0 (1 with ``once``: not every step was seen)."""
    stop = asyncio.Event()
    _stop_on_signals(stop)
    from graphsim import GraphSimulator
    from reactor.demo.stack import local_stack

    sim = GraphSimulator(token="demo-token")
    owners = sim.add_group(display_name="AskCody Owners")
    facility = sim.add_group(display_name="Facility Management")
    reception = sim.add_group(display_name="Reception Copenhagen")
    catering = sim.add_group(display_name="Catering Service")
    names = {owners: "AskCody Owner", facility: "Facility Management", reception: "Reception Copenhagen",
             catering: "Catering"}
    grants = {owners: "role", facility: "role", reception: "reception", catering: "service_provider"}

    def person(first: str, last: str, cost_center: str) -> str:
        upn = f"{first.lower()}.{last.lower()}@contoso.com"
        return sim.add_user(user_principal_name=upn, display_name=f"{first} {last}", given_name=first, surname=last,
                            mail=upn, employee_org_data={"costCenter": cost_center})

    alice = person("Alice", "Andersen", "CC-1000")
    bob = person("Bob", "Berg", "CC-2000")
    carol = person("Carol", "Christensen", "CC-3000")
    sim.add_member(owners, bob)
    sim.add_member(catering, carol)

    async with local_stack(sim, {g: (names[g], grants[g]) for g in names}, workdir / "reactor.db", port=port) as stack:

        async def user(uid: str) -> dict[str, Any] | None:
            return await stack.askcody_user(uid)

        async def member(group: str, uid: str) -> bool:
            return uid in (await stack.askcody_groups()).get(names[group], set())

        async def active(uid: str, value: bool) -> bool:
            u = await user(uid)
            return u is not None and u.get("active") is value

        async def initial() -> bool:
            return await member(owners, bob) and await member(catering, carol)

        async def alice_in_fm() -> bool:
            return await active(alice, True) and await member(facility, alice)

        async def cost_center() -> bool:
            u = await user(alice)
            return u is not None and u.get(ENTERPRISE, {}).get("costCenter") == "CC-4242"

        async def alice_out_of_reception() -> bool:
            return not await member(reception, alice) and await member(facility, alice)

        async def alice_deprovisioned() -> bool:
            return await active(alice, False) and not await member(facility, alice)

        async def bob_deprovisioned() -> bool:
            return await active(bob, False) and not await member(owners, bob)

        async def alice_in_reception() -> bool:
            return await member(reception, alice)

        async def alice_disabled() -> bool:
            return await active(alice, False) and await member(facility, alice)

        async def alice_enabled() -> bool:
            return await active(alice, True)

        steps = [
            Step("initial sync: Bob (AskCody Owners) and Carol (Catering) provisioned", lambda: None, initial),
            Step("add Alice to the role group Facility Management", lambda: sim.add_member(facility, alice), alice_in_fm),
            Step("add Alice to the reception group Reception Copenhagen", lambda: sim.add_member(reception, alice),
                 alice_in_reception),
            Step("change Alice's cost center to CC-4242",
                 lambda: sim.update_user(alice, employee_org_data={"costCenter": "CC-4242"}), cost_center),
            Step("disable Alice's account", lambda: sim.update_user(alice, account_enabled=False), alice_disabled),
            Step("enable Alice's account", lambda: sim.update_user(alice, account_enabled=True), alice_enabled),
            Step("remove Alice from Reception Copenhagen (still in Facility Management)",
                 lambda: sim.remove_member(reception, alice), alice_out_of_reception),
            Step("remove Alice from her last group", lambda: sim.remove_member(facility, alice), alice_deprovisioned),
            Step("delete Bob permanently", lambda: sim.hard_delete_user(bob), bob_deprovisioned),
        ]
        _say(f"AskCody Entra reactor demo: status page {stack.admin_url}/")
        _say(f"  simulated Graph {stack.graph_url}, embedded AskCody SCIM {stack.scim_url}")
        failed = 0
        for i, step in enumerate(steps):
            if stop.is_set():
                break
            step.change()
            took = await _wait(step.reflected, STEP_TIMEOUT, stop)
            if stop.is_set():
                break
            if took is None:
                failed += 1
                _say(f"  [{i}] FAILED  {step.title}: not reflected in AskCody within {STEP_TIMEOUT:.0f} s")
            else:
                _say(f"  [{i}] ok      {step.title}: reflected in AskCody in {took:.2f} s")
        if stop.is_set():
            _say("Stopped on request before every step was played")
            return 1 if once else 0
        _say(f"{len(steps) - failed} of {len(steps)} steps reflected in AskCody")
        if once:
            return 0 if failed == 0 else 1
        _say(f"The demo keeps running: open {stack.admin_url}/ (Ctrl-C or SIGTERM to stop)")
        await stop.wait()
        return 0 if failed == 0 else 1


def run_demo(*, once: bool = False, port: int = 0) -> int:
    """Run the demo; with ``once``, exit 0 when every step was reflected in AskCody."""
    log.configure("warning")
    retry.TESTING = False
    with tempfile.TemporaryDirectory(prefix="reactor-demo-") as tmp:
        return asyncio.run(play(once, port, Path(tmp)))
