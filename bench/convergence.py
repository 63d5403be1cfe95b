"""Model-based convergence over many seeds: random Entra operations against a whole local stack
(Graph simulator, reactor, scim2-server over loopback HTTP) with notifications dropped, duplicated,
reordered and delayed and with transient SCIM faults; at quiescence scim2-server must hold exactly
what the oracle (``tests/support/expected.py``) computes.

Prints runs, operations, failures and the time from the last operation to quiescence (p50, p95,
max); each failing seed with its first differences.

    python bench/convergence.py [--runs 20] [--ops 40] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reactor import log
from tests.proofs.model_case import random_case, run_case


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def main(runs: int, ops: int, first_seed: int, verbose: bool) -> int:
    log.configure("error")
    failures = 0
    operations = 0
    times: list[float] = []
    started = time.monotonic()
    for seed in range(first_seed, first_seed + runs):
        case = random_case(random.Random(seed), ops)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = await run_case(case, Path(tmp))
            except Exception as exc:
                failures += 1
                print(f"seed {seed}: error {type(exc).__name__}: {exc}")
                continue
        operations += result.applied
        times.append(result.seconds_to_quiesce)
        if not result.ok:
            failures += 1
            print(f"seed {seed}: {len(result.problems)} difference(s), {result.dead_letters} dead letter(s)")
            for line in result.problems[:5]:
                print(f"    {line}")
            for line in result.log:
                if line.startswith("diagnosis"):
                    print(f"    {line}")
        elif verbose:
            f = case.faults
            print(
                f"seed {seed}: ok, {result.applied} ops, quiet after {result.seconds_to_quiesce:.2f} s "
                f"(drop {f.drop_rate}, dup {f.duplicate_rate}, reorder {f.reorder}, delay {f.delay_seconds}, "
                f"scim 503 {f.scim_error_rate})"
            )
    print()
    print(f"runs                 {runs}")
    print(f"operations           {operations}")
    print(f"failures             {failures}")
    if times:
        print(
            f"time to converge     p50 {statistics.median(times):.2f} s, p95 {_pct(times, 0.95):.2f} s, "
            f"max {max(times):.2f} s (last operation to quiescence: queue empty, reconcile run)"
        )
    print(f"wall time            {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ops", type=int, default=40, help="Entra operations per run")
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.runs, args.ops, args.seed, args.verbose)))
