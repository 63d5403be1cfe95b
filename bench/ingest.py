"""Ingest benchmark: ``reactor serve`` (journal durable, one worker, 1-item batches) against a bare
Starlette app that answers 202 without reading the body, driven with the same load in one run.

The servers run side by side (an idle one costs nothing; the engine's is not idle, see below). Each gets a short warm-up, then the
load alternates between them in rounds (bare, reactor, then reactor, bare, ...), so that a slow
patch of a noisy machine falls on both rather than on one. Prints each round, then req/s over all
rounds and the median p50 and p99 for each, and the ratio reactor / bare. Uses wrk when installed
(a Lua script varies the user id of every request), else a Python load generator (said in the
output; it saturates one core itself, so its figures are lower and the ratio less telling).

Beside each server's req/s, its event loop's CPU per request (the main thread's CPU from ``/proc``
during its own rounds, over the requests answered): what bounds a server that answers on one
thread. Time stolen by other processes or the host lowers req/s but not this, so the ratio of the
two servers' CPU per request says what the req/s ratio would be on a quiet machine; on a noisy one
it is the steadier figure of the two. The engine's includes the units it runs meanwhile. A second
table says where the host's cores went during each server's rounds: the share of the time its event
loop was busy (a reactor's loop waits while the journal commits: see bench/README.md, stop 25), its
whole process, everything else (wrk; for the engine also its tenant's processes), idle, and stolen by
the hypervisor.

    python bench/ingest.py [--rounds 4] [--seconds 5] [--warmup 5] [--connections 64] [--store postgresql]
                           [--handler record|engine|both] [--engine-users 300] [--changes-per-second 50]

``--handler``: besides the reactor with the recording handler (``reactor sqlite``), a ``reactor
engine`` with the real sync engine at the default configuration (``sync.workers`` 20, 25 SCIM req/s,
Graph 50 req/s) takes
its turn in the same rounds (``both``, the default), or alone (``engine``). Its tenant is the Graph
simulator in a process of its own, seeded with ``--engine-users`` users in one configured group, and
AskCody is scim2-server in its own process (not limited itself); the start-up reconcile provisions the users before the
rounds. Its load notifies ``updated`` on those users (valid clientState, tenant and GUIDs), and a
thread of this script changes their cost center in the simulator at ``--changes-per-second``, so
that the units read Graph and write AskCody at its rate limit. Printed for it:
units handled, SCIM and Graph requests during the rounds, and the seconds the journal took to drain
after the load.

The engine's round leaves a backlog (its units are bounded by the Graph budget): the next round starts
only once that backlog has drained, so that no server's round carries another's leftover work (in
the alternating order the recording reactor's round came right after the engine's in every other
round, bare's never, and the recording reactor paid for units that were not its own). The engine's
own rounds still include every unit it runs while it answers; the seconds each drain took are printed.

With ``--store postgresql`` a throwaway durable PostgreSQL cluster journals for a second ``reactor
serve`` that takes its turn in the same rounds as the SQLite one, so the three figures (bare,
SQLite, PostgreSQL) come from the same minutes of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.sync import TOKEN, seed_user, simulator_process
from reactor.config import StoreSettings
from tests.support.postgres import Cluster
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.scim_server import scim_server_process
from tests.support.servers import free_port

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "bench-client-state-0123456789abcdef"
ENGINE_GROUP = "bbbbbbbb-0000-4000-8000-000000000001"

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
    ids = {IDS}
    request = function()
      counter = counter + 1
      local id
      if #ids > 0 then
        id = ids[math.random(1, #ids)]
      else
        id = string.format("%08d-0000-0000-0000-%012d", math.random(0, 99999999), counter)
      end
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


class EngineTenant:
    """The real engine's side of the run: the simulated tenant and AskCody (each in a process of its
    own), a thread changing the users in the tenant, and the figures read from the reactor."""

    def __init__(self, users: int, changes_per_second: float, graph_url: str, scim_url: str, scim_token: str) -> None:
        self.ids = [seed_user(i)["id"] for i in range(users)]
        self.changes_per_second = changes_per_second
        self.graph_url = graph_url
        self.scim_url = scim_url
        self.scim_token = scim_token
        self.changes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def config(self, port: int, store_url: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
        """The reactor's configuration: the default one, pointed at this tenant and AskCody."""
        sections = {
            "server": {"port": port, "log_level": "error"},
            "graph": {"tenant_id": TENANT, "base_url": self.graph_url, "token": TOKEN},
            "askcody": {"scim_url": self.scim_url, "token": self.scim_token},
            "store": {"url": store_url},
            "subscriptions": {"enabled": False},
        }
        return sections, [{"id": ENGINE_GROUP, "askcody_group": "Bench group", "grants": "role"}]

    def askcody_users(self) -> int:
        r = httpx.get(f"{self.scim_url}/Users", params={"count": "0"},
                      headers={"Authorization": f"Bearer {self.scim_token}"}, timeout=10)
        return int(r.json()["totalResults"])

    def start_changes(self) -> None:
        """Change one user's cost center after another in the tenant, at ``changes_per_second``."""
        control = self.graph_url.removesuffix("/v1.0") + "/_sim"

        def run() -> None:
            with httpx.Client(timeout=10) as client:
                started = time.monotonic()
                while not self._stop.is_set():
                    uid = self.ids[self.changes % len(self.ids)]
                    client.patch(f"{control}/users/{uid}", json={"employee_org_data": {"costCenter": f"X-{self.changes}"}})
                    self.changes += 1
                    self._stop.wait(max(0.0, started + self.changes / self.changes_per_second - time.monotonic()))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_changes(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def _stat_cpu_seconds(path: str) -> float | None:
    """User plus system CPU seconds from a ``/proc/…/stat`` file; ``None`` where there is none."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of the process's main thread (its event loop, where every request is answered)."""
    return _stat_cpu_seconds(f"/proc/{pid}/task/{pid}/stat")


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of the whole process (every thread: the event loop, the store's writer, ...)."""
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


def host_cpu_seconds() -> tuple[float, float, float] | None:
    """The host's busy, idle and stolen CPU seconds so far, summed over its cores (``/proc/stat``;
    idle includes I/O wait; stolen: time the hypervisor gave to other guests while this one wanted
    to run); ``None`` where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]] + [0] * 8
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq) / hz, (idle + iowait) / hz, steal / hz


def reactor_figures(proc: ReactorProcess) -> dict[str, float]:
    """Units handled, journal items left, objects pending, SCIM and Graph requests so far (by method
    or operation), and the journal's group commits and the seconds they took, from the reactor's admin
    listener."""
    status = httpx.get(f"{proc.admin_url}/status.json", timeout=30).json()
    out: dict[str, float] = {
        "units": status["units_handled"], "journal": status["backlog"]["journal_items"],
        "objects": status["backlog"]["objects"],
    }
    for line in httpx.get(f"{proc.admin_url}/metrics", timeout=30).text.splitlines():
        for metric, key in (("reactor_journal_write_seconds_count ", "commits"),
                            ("reactor_journal_write_seconds_sum ", "commit_s")):
            if line.startswith(metric):
                out[key] = float(line[len(metric):])
        for metric, label in (("reactor_scim_requests_total{", "method"), ("reactor_graph_calls_total{", "operation")):
            if line.startswith(metric):
                labels, value = line[len(metric):].split("} ")
                name = dict(kv.split("=", 1) for kv in labels.split(","))[label].strip('"')
                key = f"{'scim' if 'scim' in metric else 'graph'} {name}"
                out[key] = out.get(key, 0.0) + float(value)
    return out


def await_drained(proc: ReactorProcess, timeout: float) -> float | None:
    """Seconds until the reactor's journal is empty and nothing is pending; None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        figures = reactor_figures(proc)
        if figures["journal"] == 0 and figures["objects"] == 0:
            return time.monotonic() - started
        time.sleep(0.5)  # polling the reactor's status while the backlog drains (with a deadline)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5, help="load per server per round")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of load per server before measuring")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                    help="the journal: SQLite (WAL, synchronous=FULL) or a throwaway durable PostgreSQL cluster")
    ap.add_argument("--handler", choices=("record", "engine", "both"), default="both",
                    help="the reactor's handler: the recording one, the real engine, or both in the same rounds")
    ap.add_argument("--engine-users", type=int, default=300, help="users in the engine's tenant, all in scope")
    ap.add_argument("--changes-per-second", type=float, default=50.0, help="cost-center changes in the engine's tenant")
    ap.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the engine's journal to drain")
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'python (httpx) - install wrk for figures that load the server fully'}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cluster: Cluster | None = None
    if args.store == "postgresql":
        cluster = Cluster(durable=True)
        cluster.start()
        atexit.register(cluster.stop)  # also when the run fails half-way (stop is idempotent)
        print(f"store: PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port} (fsync on)")
    with contextlib.ExitStack() as exits:
        tmp = Path(exits.enter_context(tempfile.TemporaryDirectory()))
        # With --store postgresql the SQLite journal runs beside it in the same rounds, for the comparison.
        stores: dict[str, str] = {}
        if args.handler != "engine":
            stores["reactor sqlite"] = f"sqlite:///{tmp / 'reactor.db'}"
            if cluster is not None:
                stores["reactor postgresql"] = cluster.url(asyncio.run(cluster.create_database()))
        engine: EngineTenant | None = None
        if args.handler != "record":
            stores["reactor engine"] = f"sqlite:///{tmp / 'engine.db'}"
            graph_url, _ = exits.enter_context(
                simulator_process(args.engine_users, tmp, tenant_id=TENANT, group=ENGINE_GROUP))
            scim_url, scim_token = exits.enter_context(scim_server_process())
            engine = EngineTenant(args.engine_users, args.changes_per_second, graph_url, scim_url, scim_token)

        async def seed(store_url: str) -> None:
            from reactor.store import SubscriptionRecord
            from reactor.store import open_store as open_any

            store = open_any(StoreSettings(url=store_url))
            await store.open()
            await store.save_subscription(SubscriptionRecord(
                SUB, "users", "updated,deleted", "https://x/n", "https://x/l", STATE, time.time() + 86400, time.time()))
            await store.close()

        scripts = {"random": tmp / "post.lua", "engine": tmp / "engine.lua"}
        scripts["random"].write_text(WRK_SCRIPT.replace("IDS", ""))
        scripts["engine"].write_text(WRK_SCRIPT.replace("IDS", ",".join(f'"{i}"' for i in engine.ids) if engine else ""))
        procs: dict[str, ReactorProcess] = {}
        for name, store_url in stores.items():
            asyncio.run(seed(store_url))
            port = free_port()
            path = tmp / f"{name.replace(' ', '-')}.toml"
            if name == "reactor engine" and engine is not None:
                procs[name] = ReactorProcess(write_config(path, *engine.config(port, store_url)), port)
                continue
            config = write_config(path, {
                "server": {"port": port, "log_level": "error"},
                "graph": {"tenant_id": TENANT},
                "store": {"url": store_url},
                "sync": {"workers": 1},
                "subscriptions": {"enabled": False},
            })
            procs[name] = ReactorProcess(config, port, "--record", os.devnull)

        def load(name: str, url: str, seconds: int) -> dict[str, float]:
            server = bare if name == "bare starlette" else procs[name].proc
            before = loop_cpu_seconds(server.pid) if server is not None else None
            process_before = process_cpu_seconds(server.pid) if server is not None else None
            figures_before = reactor_figures(procs[name]) if name in procs else None
            host_before = host_cpu_seconds()
            started = time.monotonic()
            if use_wrk:
                result = run_wrk(url, seconds, args.connections, scripts["engine" if name == "reactor engine" else "random"])
            else:
                result = asyncio.run(run_python(url, seconds, args.connections))
            after = loop_cpu_seconds(server.pid) if server is not None else None
            process_after = process_cpu_seconds(server.pid) if server is not None else None
            host_after = host_cpu_seconds()
            result["wall"] = time.monotonic() - started
            if figures_before is not None:
                figures_after = reactor_figures(procs[name])
                result["commits"] = figures_after.get("commits", 0.0) - figures_before.get("commits", 0.0)
                result["commit_s"] = figures_after.get("commit_s", 0.0) - figures_before.get("commit_s", 0.0)
            if before is not None and after is not None:
                result["loop_cpu"] = after - before
            if process_before is not None and process_after is not None and host_before and host_after:
                result["process_cpu"] = process_after - process_before
                result["host_busy"] = host_after[0] - host_before[0]
                result["host_idle"] = host_after[1] - host_before[1]
                result["host_stolen"] = host_after[2] - host_before[2]
            return result

        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
        rounds: dict[str, list[dict[str, float]]] = {"bare starlette": [], **{name: [] for name in procs}}
        loads: list[float] = []
        drains: list[float] = []
        engine_before: dict[str, float] = {}
        engine_after: dict[str, float] = {}
        drained: float | None = None
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
            if engine is not None:
                # The start-up reconcile provisions the tenant's users: wait for it before loading.
                started = time.monotonic()
                drained = await_drained(procs["reactor engine"], args.drain_timeout)
                print(f"engine: start-up reconcile provisioned {engine.askcody_users()} of {args.engine_users} users "
                      f"in {time.monotonic() - started:.1f} s", flush=True)
                engine.start_changes()
            urls = {"bare starlette": f"http://127.0.0.1:{bare_port}", **{n: p.url for n, p in procs.items()}}
            for name, url in urls.items():
                load(name, url, args.warmup)
                if name == "reactor engine":
                    await_drained(procs[name], args.drain_timeout)
            if engine is not None:
                engine_before = reactor_figures(procs["reactor engine"])
            began = time.monotonic()
            for n in range(args.rounds):
                order = list(urls) if n % 2 == 0 else list(reversed(urls))
                for name in order:
                    rounds[name].append(load(name, urls[name], args.seconds))
                    if name == "reactor engine":
                        # Its leftover units would weigh on the next server's round: wait them out.
                        waited = await_drained(procs[name], args.drain_timeout)
                        drains.append(waited if waited is not None else float("inf"))
                loads.append(os.getloadavg()[0])
                bare_rps = rounds["bare starlette"][-1]["rps"]
                line = ", ".join(f"{name} {rounds[name][-1]['rps']:.0f} req/s ({rounds[name][-1]['rps'] / bare_rps:.2f})"
                                 for name in procs)
                print(f"round {n + 1}: bare {bare_rps:.0f} req/s, {line}; load average {loads[-1]:.2f}", flush=True)
            if engine is not None:
                measured = time.monotonic() - began
                engine.stop_changes()
                engine_after = reactor_figures(procs["reactor engine"])
                drained = await_drained(procs["reactor engine"], args.drain_timeout)
        finally:
            if engine is not None:
                engine.stop_changes()
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

    print(f"{'':20} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'loop us/req':>12}   ({args.rounds} rounds of "
          f"{args.seconds} s, {args.connections} connections)")
    totals: dict[str, float] = {}
    per_request: dict[str, float] = {}
    for name, rs in rounds.items():
        totals[name] = sum(r["requests"] for r in rs) / sum(r["requests"] / r["rps"] for r in rs)
        p50 = statistics.median(r["p50_ms"] for r in rs)
        p99 = statistics.median(r["p99_ms"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        if all("loop_cpu" in r for r in rs):
            per_request[name] = sum(r["loop_cpu"] for r in rs) / sum(r["requests"] for r in rs) * 1e6
        cpu = f"{per_request[name]:12.1f}" if name in per_request else f"{'-':>12}"
        print(f"{name:20} {totals[name]:10.0f} {p50:9.2f} {p99:9.2f} {errors:7.0f} {cpu}")
    if all("host_busy" in r for rs in rounds.values() for r in rs):
        # Where the host's cores went while each server was loaded: its event loop (busy this share of
        # the time), the whole server process, everything else (wrk, and during the engine's rounds its
        # tenant's processes and this script's change thread), idle, and stolen by the hypervisor.
        print(f"{'cores during rounds':20} {'loop busy':>10} {'server':>9} {'others':>9} {'idle':>7} {'stolen':>7}   "
              f"(of {os.cpu_count()} cores; others: wrk and, for the engine, its tenant's processes)")
        for name, rs in rounds.items():
            wall = sum(r["wall"] for r in rs)
            server_cores = sum(r["process_cpu"] for r in rs) / wall
            host_busy = sum(r["host_busy"] for r in rs) / wall
            print(f"{name:20} {sum(r['loop_cpu'] for r in rs) / wall:10.2f} {server_cores:9.2f} "
                  f"{host_busy - server_cores:9.2f} {sum(r['host_idle'] for r in rs) / wall:7.2f}"
                  f" {sum(r['host_stolen'] for r in rs) / wall:7.2f}")
    if any(rs and all("commits" in r for r in rs) for rs in rounds.values()):
        # The journal's group commits while each reactor was loaded: the loop waits for them (see above).
        print(f"{'journal commits':20} {'per s':>10} {'req/commit':>11} {'ms each':>8} {'busy':>6}"
              "   (busy: the writer in a commit, share of the time)")
        for name, rs in rounds.items():
            if not rs or not all("commits" in r for r in rs):
                continue
            wall, commits = sum(r["wall"] for r in rs), sum(r["commits"] for r in rs)
            spent = sum(r["commit_s"] for r in rs)
            if commits:
                print(f"{name:20} {commits / wall:10.0f} {sum(r['requests'] for r in rs) / commits:11.1f}"
                      f" {spent / commits * 1e3:8.2f} {spent / wall:6.2f}")
    for name in left:
        target = "0.50" if "postgresql" in name else "0.60"
        cpu = ""
        if name in per_request and "bare starlette" in per_request:
            cpu = f"; event-loop CPU per request bare/{name.removeprefix('reactor ')}: " \
                  f"{per_request['bare starlette'] / per_request[name]:.2f}"
        # Each round's ratio against bare's round next to it: how far one slow moment of the host moved it.
        by_round = [r["rps"] / b["rps"] for r, b in zip(rounds[name], rounds["bare starlette"], strict=True)]
        print(f"ratio {name}/bare req/s: {totals[name] / totals['bare starlette']:.2f} (target >= {target}; rounds:"
              f" median {statistics.median(by_round):.2f}, {min(by_round):.2f}-{max(by_round):.2f});"
              f" journal items left pending after stop: {left[name]}{cpu}")
    print(f"load average during the rounds: {', '.join(f'{x:.2f}' for x in loads)}")
    if engine is not None and engine_after:
        delta = {k: engine_after.get(k, 0.0) - engine_before.get(k, 0.0) for k in engine_after}
        accepted = sum(r["requests"] for r in rounds["reactor engine"])
        print(f"engine, during the {measured:.0f} s of rounds and drains ({accepted:.0f} notifications answered to it, "
              f"{engine.changes} changes made in the tenant in all):")
        print(f"    units handled      {delta['units']:8.0f}   ({delta['units'] / measured:.1f}/s)")
        print(f"    SCIM requests      {sum(v for k, v in delta.items() if k.startswith('scim ')):8.0f}   "
              f"({', '.join(f'{k[5:]} {v:.0f}' for k, v in sorted(delta.items()) if k.startswith('scim ') and v)})")
        print(f"    Graph requests     {sum(v for k, v in delta.items() if k.startswith('graph ')):8.0f}   "
              f"({', '.join(f'{k[6:]} {v:.0f}' for k, v in sorted(delta.items()) if k.startswith('graph ') and v)})")
        print(f"    backlog at the end {engine_after['journal']:8.0f} journal items, {engine_after['objects']:.0f} objects")
        took = f"not within {args.drain_timeout:.0f} s" if drained is None else f"{drained:.1f} s"
        print(f"    drained after      {took}")
        print(f"    drains after its rounds: {', '.join(f'{d:.1f} s' for d in drains)} (the next round waited for each)")


if __name__ == "__main__":
    main()
