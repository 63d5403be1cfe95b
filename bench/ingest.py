"""Ingest benchmark: ``reactor serve`` (journal durable, one worker, 1-item batches) against a bare
Starlette app that answers 202 without reading the body, driven with the same load in one run.

Both servers run side by side (the idle one costs nothing). Each gets a short warm-up, then the
load alternates between them in rounds (bare, reactor, then reactor, bare, ...), so that a slow
patch of a noisy machine falls on both rather than on one. Prints each round, then req/s over all
rounds and the median p50 and p99 for each, and the ratio reactor / bare. Uses wrk when installed
(a Lua script varies the user id of every request), else a Python load generator (said in the
output; it saturates one core itself, so its figures are lower and the ratio less telling).

    python bench/ingest.py [--rounds 4] [--seconds 5] [--warmup 5] [--connections 64] [--store postgresql]

With ``--store postgresql`` a throwaway durable PostgreSQL cluster journals for a second ``reactor
serve`` that takes its turn in the same rounds as the SQLite one, so the three figures (bare,
SQLite, PostgreSQL) come from the same minutes of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from reactor.config import StoreSettings
from tests.support.postgres import Cluster
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "bench-client-state-0123456789abcdef"

BARE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def accept(request):
        return Response(status_code=202)

    app = Starlette(routes=[Route("/notifications", accept, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
                access_log=False, log_level="warning")
    """
)

WRK_SCRIPT = textwrap.dedent(
    """
    counter = 0
    request = function()
      counter = counter + 1
      local id = string.format("%08d-0000-0000-0000-%012d", math.random(0, 99999999), counter)
      local body = '{"value":[{"subscriptionId":"SUB","clientState":"STATE","changeType":"updated",'
        .. '"resource":"Users/' .. id .. '","resourceData":{"@odata.type":"#Microsoft.Graph.User","id":"'
        .. id .. '"},"tenantId":"TENANT"}]}'
      return wrk.format("POST", "/notifications", {["Content-Type"]="application/json"}, body)
    end
    done = function(summary, latency, requests)
      io.write(string.format("RESULT %d %f %f %f %d\\n", summary.requests, summary.duration / 1e6,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
    end
    """
).replace("SUB", SUB).replace("STATE", STATE).replace("TENANT", TENANT)


def run_wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url + "/notifications"],
        capture_output=True, text=True, check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    _, n, dur, p50, p99, errors = line.split()
    return {
        "requests": float(n), "rps": float(n) / float(dur), "p50_ms": float(p50), "p99_ms": float(p99),
        "errors": float(errors),
    }


async def run_python(url: str, seconds: int, connections: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            uid = f"00000000-0000-0000-0000-{counter:012d}"
            body = {"value": [{"subscriptionId": SUB, "clientState": STATE, "changeType": "updated", "tenantId": TENANT,
                               "resource": f"Users/{uid}", "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": uid}}]}
            t = time.perf_counter()
            r = await client.post(url + "/notifications", json=body)
            latencies.append(time.perf_counter() - t)
            if r.status_code >= 300:
                errors += 1

    start = time.perf_counter()
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(connections)))
    dur = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "rps": n / dur, "p50_ms": latencies[n // 2] * 1000, "p99_ms": latencies[int(n * 0.99)] * 1000,
            "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5, help="load per server per round")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of load per server before measuring")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the journal: SQLite (WAL, synchronous=FULL) or a throwaway durable PostgreSQL cluster")
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'python (httpx) - install wrk for figures that load the server fully'}")
    cluster: Cluster | None = None
    if args.store == "postgresql":
        cluster = Cluster(durable=True)
        cluster.start()
        atexit.register(cluster.stop)  # also when the run fails half-way (stop is idempotent)
        print(f"store: PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port} (fsync on)")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        # With --store postgresql the SQLite journal runs beside it in the same rounds, for the comparison.
        stores = {"reactor sqlite": f"sqlite:///{tmp / 'reactor.db'}"}
        if cluster is not None:
            stores["reactor postgresql"] = cluster.url(asyncio.run(cluster.create_database()))

        async def seed(store_url: str) -> None:
            from reactor.store import SubscriptionRecord
            from reactor.store import open_store as open_any

            store = open_any(StoreSettings(url=store_url))
            await store.open()
            await store.save_subscription(SubscriptionRecord(
                SUB, "users", "updated,deleted", "https://x/n", "https://x/l", STATE, time.time() + 86400, time.time()))
            await store.close()

        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        procs: dict[str, ReactorProcess] = {}
        for name, store_url in stores.items():
            asyncio.run(seed(store_url))
            port = free_port()
            config = write_config(tmp / f"{name.replace(' ', '-')}.toml", {
                "server": {"port": port, "log_level": "error"},
                "graph": {"tenant_id": TENANT},
                "store": {"url": store_url},
                "sync": {"workers": 1},
                "subscriptions": {"enabled": False},
            })
            procs[name] = ReactorProcess(config, port, "--record", os.devnull)

        def load(url: str, seconds: int) -> dict[str, float]:
            if use_wrk:
                return run_wrk(url, seconds, args.connections, script)
            return asyncio.run(run_python(url, seconds, args.connections))

        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
        rounds: dict[str, list[dict[str, float]]] = {"bare starlette": [], **{name: [] for name in procs}}
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.post(f"http://127.0.0.1:{bare_port}/notifications", content=b"{}", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            for proc in procs.values():
                proc.start()
            urls = {"bare starlette": f"http://127.0.0.1:{bare_port}", **{n: p.url for n, p in procs.items()}}
            for url in urls.values():
                load(url, args.warmup)
            for n in range(args.rounds):
                order = list(urls) if n % 2 == 0 else list(reversed(urls))
                for name in order:
                    rounds[name].append(load(urls[name], args.seconds))
                bare_rps = rounds["bare starlette"][-1]["rps"]
                line = ", ".join(f"{name} {rounds[name][-1]['rps']:.0f} req/s ({rounds[name][-1]['rps'] / bare_rps:.2f})"
                                 for name in procs)
                print(f"round {n + 1}: bare {bare_rps:.0f} req/s, {line}", flush=True)
        finally:
            bare.send_signal(signal.SIGTERM)
            bare.wait(10)
            for proc in procs.values():
                if proc.proc is not None:
                    proc.terminate()

        async def journal_count(store_url: str) -> int:
            from reactor.store import open_store as open_any

            store = open_any(StoreSettings(url=store_url))
            await store.open()
            n, _ = await store.backlog()
            await store.close()
            return n

        left = {name: asyncio.run(journal_count(url)) for name, url in stores.items()}

    print(f"{'':20} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}   ({args.rounds} rounds of {args.seconds} s, "
          f"{args.connections} connections)")
    totals: dict[str, float] = {}
    for name, rs in rounds.items():
        totals[name] = sum(r["requests"] for r in rs) / sum(r["requests"] / r["rps"] for r in rs)
        p50 = statistics.median(r["p50_ms"] for r in rs)
        p99 = statistics.median(r["p99_ms"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        print(f"{name:20} {totals[name]:10.0f} {p50:9.2f} {p99:9.2f} {errors:7.0f}")
    for name in left:
        target = "0.50" if "postgresql" in name else "0.60"
        print(f"ratio {name}/bare req/s: {totals[name] / totals['bare starlette']:.2f} (target >= {target});"
              f" journal items left pending after stop: {left[name]}")


if __name__ == "__main__":
    main()
