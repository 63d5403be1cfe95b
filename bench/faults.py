"""Fault figures: ``reactor serve`` as a process between the Graph simulator and scim2-server, one
fault at a time, each run compared with the oracle (``tests/support/expected.py``).

For each fault: runs, changes made in Entra, changes lost (differences from the oracle left at the
deadline, summed over the runs), dead letters, and the time to converge after the fault ended
(median and max over the runs).

- kill -9: SIGKILL at random moments of a burst of changes, restart on the same store;
- SCIM outage: AskCody refuses connections for ``--outage-seconds`` (default 300) while Entra changes;
- 30% drop: the simulator loses 30% of the change notifications; the reconcile interval is 5 s;
- 429 storm: Graph answers 429 with Retry-After to two storms of requests during a burst.

    python bench/faults.py [--runs 3] [--ops 60] [--outage-seconds 300] [--only kill,outage,drop,429]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from reactor import log
from tests.proofs.scenarios import FaultResult, dropped_notifications, kill9, scim_outage, throttle_storm

Scenario = Callable[[Path, int], Awaitable[FaultResult]]


def scenarios(ops: int, outage: float) -> dict[str, Scenario]:
    return {
        "kill": lambda tmp, seed: kill9(tmp, seed=seed, ops=ops, kills=3, timeout=120),
        "outage": lambda tmp, seed: scim_outage(tmp, seed=seed, outage_seconds=outage, ops=max(10, ops // 2), timeout=180),
        "drop": lambda tmp, seed: dropped_notifications(tmp, seed=seed, drop_rate=0.3, interval=5.0, ops=ops),
        "429": lambda tmp, seed: throttle_storm(tmp, seed=seed, storm=60, retry_after=1.0, ops=ops, timeout=120),
    }


def _fmt(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"median {statistics.median(seconds):5.1f} s, max {max(seconds):5.1f} s"


async def main(runs: int, ops: int, outage: float, only: list[str], first_seed: int) -> int:
    log.configure("error")
    rows: list[tuple[str, int, int, int, int, str, str]] = []
    failed = False
    for name, scenario in scenarios(ops, outage).items():
        if only and name not in only:
            continue
        results: list[FaultResult] = []
        started = time.monotonic()
        for seed in range(first_seed, first_seed + runs):
            with tempfile.TemporaryDirectory() as tmp:
                result = await scenario(Path(tmp), seed)
            results.append(result)
            details = {k: v for k, v in result.details.items() if v or k != "left"}
            took = "-" if result.seconds_to_converge is None else f"{result.seconds_to_converge:.1f} s"
            print(f"  {result.fault}, seed {seed}: {result.changes} changes, {result.lost} lost, "
                  f"{result.dead_letters} dead letters, converged in {took}; {details}", flush=True)
        times = [r.seconds_to_converge for r in results if r.seconds_to_converge is not None]
        lost = sum(r.lost for r in results)
        dead = sum(r.dead_letters for r in results)
        failed = failed or lost > 0 or dead > 0 or len(times) < len(results)
        rows.append((results[0].fault, len(results), sum(r.changes for r in results), lost, dead, _fmt(times),
                     f"{time.monotonic() - started:.0f} s"))
    print()
    header = ("fault", "runs", "changes made", "changes lost", "dead letters", "time to converge", "wall")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=60, help="Entra changes per run")
    parser.add_argument("--outage-seconds", type=float, default=300.0)
    parser.add_argument("--only", default="", help="comma-separated: kill,outage,drop,429")
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    sys.exit(asyncio.run(main(args.runs, args.ops, args.outage_seconds, only, args.seed)))
