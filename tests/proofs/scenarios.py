"""The fault scenarios, each against a fresh :func:`proof_rig.process_rig`, reporting what they saw.

The proofs in ``tests/proofs`` run them small and assert on the result; ``bench/faults.py`` runs
them bigger and prints the figures. "Changes lost" is the number of differences between
scim2-server and the oracle that are left when the scenario's deadline passes (0: converged).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.proofs.proof_rig import process_rig


@dataclass
class FaultResult:
    fault: str
    changes: int
    """Entra operations applied during the fault."""
    lost: int
    """Differences from the oracle left at the deadline."""
    seconds_to_converge: float | None
    """From the end of the fault (last change, restart, outage over) to AskCody matching the oracle."""
    dead_letters: int = 0
    details: dict[str, Any] = field(default_factory=dict)


async def kill9(tmp: Path, *, seed: int, ops: int = 40, kills: int = 2, timeout: float = 90.0) -> FaultResult:
    """SIGKILL the reactor at random moments of a burst of changes, start it again, compare."""
    async with process_rig(tmp, seed=seed) as rig:
        kill_at = set(rig.rng.sample(range(1, ops - 1), kills))
        restarting: list[asyncio.Task[None]] = []
        downtime: list[float] = []

        async def restart_later(delay: float, killed_at: float) -> None:
            await asyncio.sleep(delay)
            await rig.start()
            downtime.append(time.monotonic() - killed_at)

        async def on_step(i: int) -> None:
            if i not in kill_at:
                return
            if restarting:
                await restarting[-1]
            killed_at = time.monotonic()
            await rig.kill()
            restarting.append(asyncio.create_task(restart_later(rig.rng.uniform(0.0, 1.0), killed_at)))

        applied = await rig.burst(ops, pause=0.15, on_step=on_step)
        await asyncio.gather(*restarting)
        lost, seconds = await rig.lost(timeout)
        return FaultResult(
            "kill -9", applied, lost, seconds, rig.dead_letters(),
            {"kills": kills, "seconds_down": [round(d, 1) for d in downtime], "left": rig.left},
        )


async def scim_outage(tmp: Path, *, seed: int, outage_seconds: float, ops: int = 20, timeout: float = 120.0) -> FaultResult:
    """AskCody refuses connections for ``outage_seconds`` while Entra changes; then it is back."""
    overrides = {"sync": {"reconcile_interval_seconds": 5.0}}
    async with process_rig(tmp, seed=seed, overrides=overrides) as rig:
        before = rig.proxy.count()
        started = time.monotonic()
        async with rig.proxy_down():
            applied = await rig.burst(ops, pause=min(1.0, outage_seconds / max(1, ops) / 2))
            await asyncio.sleep(max(0.0, outage_seconds - (time.monotonic() - started)))
            pending = rig.pending()
        lost, seconds = await rig.lost(timeout)
        return FaultResult(
            f"SCIM outage {outage_seconds:g} s", applied, lost, seconds, rig.dead_letters(),
            {"pending_when_back": pending, "scim_requests": rig.proxy.count() - before, "left": rig.left},
        )


async def dropped_notifications(
    tmp: Path, *, seed: int, drop_rate: float = 0.3, interval: float = 5.0, ops: int = 40
) -> FaultResult:
    """The simulator loses ``drop_rate`` of the change notifications; only the reconcile can repair."""
    overrides = {"sync": {"reconcile_interval_seconds": interval}}
    async with process_rig(tmp, seed=seed, overrides=overrides) as rig:
        rig.sim.faults.drop_rate = drop_rate
        applied = await rig.burst(ops)
        lost, seconds = await rig.lost(3 * interval + 10)
        stats = rig.sim.delivery.stats
        return FaultResult(
            f"{drop_rate:.0%} notifications dropped", applied, lost, seconds, rig.dead_letters(),
            {"dropped": stats["dropped"], "queued": stats["queued"], "reconcile_interval": interval, "left": rig.left},
        )


async def throttle_storm(
    tmp: Path, *, seed: int, storm: int = 40, retry_after: float = 1.0, ops: int = 30, timeout: float = 90.0
) -> FaultResult:
    """Graph answers 429 with ``Retry-After`` to the next ``storm`` requests, twice during a burst."""
    async with process_rig(tmp, seed=seed) as rig:
        mark = len(rig.graph_log.calls)
        rig.sim.throttle(storm, retry_after=retry_after, path_prefix="/v1.0/")

        async def second_storm(i: int) -> None:
            if i == ops // 2:
                rig.sim.throttle(storm, retry_after=retry_after, path_prefix="/v1.0/")

        applied = await rig.burst(ops, on_step=second_storm)
        lost, seconds = await rig.lost(timeout)
        calls = rig.graph_log.calls[mark:]
        early = early_retries(calls)
        return FaultResult(
            f"Graph 429 storm ({2 * storm} x Retry-After {retry_after:g} s)", applied, lost, seconds, rig.dead_letters(),
            {"throttled": sum(c.status == 429 for c in calls), "graph_requests": len(calls), "early_retries": early,
             "left": rig.left},
        )


def early_retries(calls: list[Any], tolerance: float = 0.05) -> list[str]:
    """Requests sent to a URL before the ``Retry-After`` of a 429 that URL got had passed."""
    out: list[str] = []
    ordered = sorted(calls, key=lambda c: c.started)
    for i, c in enumerate(ordered):
        if c.status != 429 or c.retry_after is None:
            continue
        not_before = c.ended + c.retry_after - tolerance
        nxt = next((d for d in ordered[i + 1 :] if d.target == c.target and d.started >= c.ended), None)
        if nxt is not None and nxt.started < not_before:
            gap = nxt.started - c.ended
            out.append(f"{c.method} {c.target}: again {gap:.2f} s after a 429 with Retry-After {c.retry_after:g}")
    return out
