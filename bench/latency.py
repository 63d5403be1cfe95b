"""Latency benchmark: bursts of ordinary changes reach AskCody within a second.

20 users are provisioned in one group in scope, then ``--changes`` (default 1,000) cost-center
changes are made in the simulated tenant at ``--per-second`` (default 50), spread over the users in
turn, while the reactor runs at its default configuration (AskCody behind a proxy enforcing
``--rate`` req/s, the reactor at the same ``askcody.max_requests_per_second``). Each change carries
a new value (``CC-<n>``, n increasing); it has reached AskCody when a ``PATCH /Users/{id}`` of that
user carrying that value or a later one has been answered (coalescing writes only the newest). Prints
the latency from the change in Entra to that answer (p50, p99, max), the SCIM requests by method,
the SCIM writes, and the requests per unit (a unit: one user's coalesced work that wrote; the
operations of a ``POST /Bulk`` count as writes, the bulk request as one request).

    python -m bench.latency [--changes 1000] [--per-second 50] [--users 20] [--rate 25]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.sync import TOKEN, askcody_limit
from graphsim import GraphSimulator
from reactor import log
from reactor.demo.stack import local_stack
from tests.support.eventually import eventually
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import scim_server

VALUE = re.compile(rb'"CC-(\d+)"')


def answered_writes(proxy: FaultProxy) -> list[tuple[float, str, int]]:
    """Record (time answered, SCIM user id, n of the CC-n value) of every PATCH /Users/{id} answered 2xx,
    alone or as an operation of a ``POST /Bulk`` (answered 2xx for that operation)."""
    seen: list[tuple[float, str, int]] = []
    forward = proxy._forward

    def patched(path: str, data: bytes) -> None:
        found = VALUE.search(data)
        if found:
            seen.append((time.monotonic(), path.rsplit("/", 1)[1], int(found.group(1))))

    async def timed(request: ProxiedRequest, headers: Any) -> Any:
        out = await forward(request, headers)
        if not 200 <= out[0] < 300:
            return out
        if request.method == "PATCH" and request.path.startswith("/Users/"):
            patched(request.path, request.body)
        elif request.method == "POST" and request.path == "/Bulk":
            answers = {str(op.get("bulkId")): op for op in orjson.loads(out[2]).get("Operations", [])}
            for op in request.json().get("Operations", []):
                status = str(answers.get(str(op.get("bulkId")), {}).get("status", ""))
                if op.get("method") == "PATCH" and str(op.get("path", "")).startswith("/Users/") and status.startswith("2"):
                    patched(op["path"], orjson.dumps(op.get("data")))
        return out

    proxy._forward = timed  # type: ignore[method-assign,assignment]
    return seen


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(changes: int, per_second: float, n_users: int, rate: float) -> None:
    sim = GraphSimulator(token=TOKEN)
    group = sim.add_group(display_name="Reception Aarhus")
    users = [
        sim.add_user(user_principal_name=f"søren.o'brien{i:02d}@contoso.com", display_name=f"Søren O'Brien {i}",
                     given_name="Søren", surname=f"O'Brien {i}", mail=f"soren.obrien{i:02d}@contoso.com",
                     employee_org_data={"costCenter": "CC-0"})
        for i in range(n_users)
    ]
    with tempfile.TemporaryDirectory() as tmp_s:
        async with scim_server() as server, fault_proxy(server.url) as proxy:
            askcody_limit(proxy, rate)
            async with local_stack(
                sim, {group: ("Reception Aarhus", "reception")}, Path(tmp_s) / "reactor.db", scim_url=proxy.url,
                scim_token=server.token, askcody={"max_requests_per_second": rate},
                sync={"reconcile_interval_seconds": 86_400.0},
            ) as stack:
                await eventually(lambda: len(sim.subscriptions) == 2 and stack.engine.last_reconcile_at is not None,
                                 "start-up", 60, 0.2)
                for uid in users:
                    sim.add_member(group, uid)

                def provisioned() -> bool:
                    found = server.resources("Group")
                    return bool(found) and len(found[0].members or []) == n_users and stack.service.dispatcher.depth == 0

                await eventually(provisioned, "the users provisioned", 120, 0.1)
                scim_ids = {str(u.external_id): str(u.id) for u in server.resources("User")}
                writes = answered_writes(proxy)
                before, faulted = proxy.requests.copy(), sum(proxy.faulted.values())
                made: list[tuple[float, str, int]] = []
                started = time.monotonic()
                for k in range(1, changes + 1):
                    due = started + (k - 1) / per_second
                    await asyncio.sleep(max(0.0, due - time.monotonic()))  # the pace of the changes
                    uid = users[(k - 1) % n_users]
                    sim.update_user(uid, employee_org_data={"costCenter": f"CC-{k}"})
                    made.append((time.monotonic(), scim_ids[uid], k))

                def arrived() -> bool:
                    last = {sid: k for _, sid, k in made}
                    got: dict[str, int] = {}
                    for _, sid, k in writes:
                        got[sid] = max(got.get(sid, 0), k)
                    return all(got.get(sid, 0) >= k for sid, k in last.items()) and stack.service.dispatcher.depth == 0

                await eventually(arrived, "every change in AskCody", 120, 0.05)
                sent = proxy.requests - before
                throttled = sum(proxy.faulted.values()) - faulted
                dead = len(await stack.service.store.dead_letters())
    latencies = []
    for at, sid, k in made:
        latencies.append(min(t for t, s, n in writes if s == sid and n >= k and t >= at) - at)
    by_method = Counter[str]()
    for (method, _), count in sent.items():
        by_method[method] += count
    total = sum(by_method.values())
    print(f"{changes} cost-center changes at {per_second:g}/s over {n_users} provisioned users, reactor and AskCody "
          f"at {rate:g} req/s (default config otherwise)")
    print(f"    latency Entra change → SCIM write answered: p50 {statistics.median(latencies):.2f} s, "
          f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s")
    print(f"    SCIM requests {total} ({', '.join(f'{m} {c}' for m, c in sorted(by_method.items()))}), "
          f"writes carrying a change {len(writes)}, requests per unit {total / max(len(writes), 1):.2f}")
    print(f"    429s seen {throttled}, dead letters {dead}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--per-second", type=float, default=50.0)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rate", type=float, default=25.0, help="askcody.max_requests_per_second and AskCody's limit")
    args = ap.parse_args()
    log.configure("error")
    asyncio.run(run(args.changes, args.per_second, args.users, args.rate))


if __name__ == "__main__":
    main()
