"""Fuzz run of the public endpoints over real HTTP: ``--examples`` generated requests (bodies, query
strings, headers; see tests/support/fuzzing.py) to ``POST /notifications``, ``POST /lifecycle`` and
``GET /healthz`` of ``create_app(Service(...))`` under uvicorn (SQLite journal, a handler that records
what it is given), the same generators and checks as tests/fuzz, many more examples.

The server runs in this process; ``--workers`` processes generate and send (hypothesis, one seed
each, one keep-alive connection each), so that generation does not share the server's GIL. Prints
what was sent, the answers, the crashes (the server no longer answering /healthz), the 5xx, the
answers outside the contract, the effects of invalid items (journal entries the handler got that no
valid item owed) and of valid ones lost, requests/s, the reactor's log lines per request.

    python -m bench.fuzz [--examples 100000] [--workers 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime
import io
import multiprocessing
import os
import platform
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import orjson

from reactor import log
from tests.support.fuzzing import Ledger, alive, effects, fuzz, fuzz_target, leftover_journal, non_guid, wait_settled


def _work(url: str, examples: int, seed: int) -> Ledger:
    ledger = Ledger()
    with httpx.Client(timeout=60) as client:
        fuzz(client, url, ledger, examples, seed=seed)
    return ledger


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-level", default="error", help="the reactor's (info: count its lines per request; slower)")
    args = ap.parse_args()
    logs = io.StringIO()
    log.configure(args.log_level, stream=logs)
    ledger = Ledger()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with fuzz_target(tmp) as target:
            start = time.perf_counter()
            share = [args.examples // args.workers + (i < args.examples % args.workers) for i in range(args.workers)]
            with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for part in pool.map(_work, [target.url] * args.workers, share, range(args.seed, args.seed + args.workers)):
                    ledger.merge(part)
            duration = time.perf_counter() - start
            with httpx.Client(timeout=10) as client:
                still_alive = alive(client, target.url)
            wait_settled(target, ledger, timeout=120)
            missing, extra = effects(ledger, target.recorder)
            received = len(target.recorder.effects)
        left = leftover_journal(target.db)
    lines = logs.getvalue().splitlines()
    causes = Counter(
        orjson.loads(line)["exception"].strip().splitlines()[-1]
        for line in lines
        if line.startswith("{") and '"exception"' in line
    )

    print(f"date {datetime.date.today()}, {platform.node() or 'host'}: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}, {args.workers} generating workers, "
          f"seeds {args.seed}..{args.seed + args.workers - 1}")
    print(f"requests sent          {ledger.sent:>9}   ({args.examples} examples asked)")
    for label, n in sorted(ledger.labels.items(), key=lambda kv: -kv[1]):
        print(f"  {label:28} {n:>7}")
    print("answers                " + ", ".join(f"{code}: {n}" for code, n in sorted(ledger.statuses.items()))
          + (f", connection closed: {ledger.dropped}" if ledger.dropped else ""))
    print(f"crashes                {0 if still_alive else 1:>9}   (/healthz answered after the run: {still_alive})")
    print(f"5xx                    {ledger.server_errors:>9}")
    for cause, n in causes.most_common():
        print(f"  {n:>7}  exception in the server: {cause}")
    print(f"outside the contract   {sum(ledger.problems.values()):>9}")
    for problem, n in ledger.problems.most_common():
        print(f"  {n:>7}  {problem}")
    print(f"valid items accepted   {sum(ledger.owed.values()):>9}   "
          f"(handler received {received} entries; lost: {sum(missing.values())})")
    by_id = sum(n for e, n in extra.items() if non_guid(e))
    print(f"effects of invalid     {sum(extra.values()):>9}   (entries no valid item owed)")
    print(f"  {by_id:>7}  object id not a GUID, e.g. {[e for e in sorted(extra) if non_guid(e)][:4]}")
    print(f"  {sum(extra.values()) - by_id:>7}  other, e.g. {[e for e in sorted(extra) if not non_guid(e)][:4]}")
    print(f"journal left pending   {len(left):>9}")
    print(f"duration               {duration:>9.1f} s   {ledger.sent / duration:.0f} requests/s")
    print(f"reactor log lines      {len(lines):>9}   ({len(lines) / max(ledger.sent, 1):.2f} per request, at {args.log_level})")
    for v in ledger.violations[:5]:
        print("example:", v[:1200])


if __name__ == "__main__":
    main()
