"""Failover of two replicas on one PostgreSQL database, with figures (tests/support/failover.py).

Two ``reactor serve`` processes share a throwaway PostgreSQL cluster (durable, fsync on) behind a
round-robin balancer that the Graph simulator delivers to; a burst of Entra changes runs and the
leading replica is killed with SIGKILL in its middle. Prints: changes, lost, seconds until the
survivor leads, seconds to converge after the burst, journal entries left, objects handled by both
replicas at once, requests and units per replica, and whether the survivor kept the subscriptions
and reconciled.

    python -m bench.failover [--changes 400] [--users 40] [--lease 15] [--seed 7] [--json]
    python -m bench.failover --rolling      # restart both replicas one after the other instead

``--rolling`` prints what Graph was answered while each replica restarted in turn during the stream
(non-2xx only from a replica that was stopping), what was lost and the seconds to converge.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import orjson

from tests.support.failover import run_failover, run_rolling_restart
from tests.support.postgres import Cluster


async def main(args: argparse.Namespace) -> int:
    cluster = Cluster(durable=True)
    cluster.start()
    try:
        async with cluster.database() as name:
            with tempfile.TemporaryDirectory(prefix="reactor-failover-") as tmp:
                if args.rolling:
                    rolling = await run_rolling_restart(
                        Path(tmp), cluster.url(name), changes=args.changes, users=args.users, seed=args.seed,
                        lease=args.lease,
                    )
                    print(orjson.dumps(rolling.as_dict(), option=orjson.OPT_INDENT_2).decode())
                    ok = rolling.lost == 0 and not rolling.refused and not rolling.overlaps and not rolling.journal_left
                    return 0 if ok else 1
                figures = await run_failover(
                    Path(tmp), cluster.url(name), changes=args.changes, users=args.users, seed=args.seed,
                    lease=args.lease, converge_timeout=max(120.0, args.lease * 8),
                )
    finally:
        cluster.stop()
    if args.json:
        print(orjson.dumps(figures.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"changes applied in Entra      {figures.changes}")
        print(f"lost (differences left)       {figures.lost}")
        print(f"lease_seconds                 {args.lease:g}")
        print(f"seconds until survivor leads  {figures.seconds_until_survivor_leads}")
        print(f"seconds to converge (after)   {figures.seconds_to_converge}")
        print(f"journal entries left          {figures.journal_left}")
        print(f"objects handled by both       {len(figures.overlaps)}")
        print(f"requests per replica          {figures.served}")
        print(f"units per replica             {figures.units_by_replica}")
        print(f"survivor kept subscriptions   {figures.renewed_by_survivor}")
        print(f"survivor reconciled           {figures.reconciled_by_survivor}")
        print(f"dead letters                  {figures.dead_letters}")
        for p in figures.problems[:10] + figures.overlaps[:10]:
            print(f"  {p}")
    ok = figures.lost == 0 and not figures.overlaps and figures.journal_left == 0
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=400)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--lease", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rolling", action="store_true", help="rolling restart of both replicas instead of a kill")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
