"""Sync benchmark, three parts measured in one run:

(a) bulk add: N users (default 10,000) already in the tenant are added to one group in scope while
    the reactor runs (simulator → notifications → groups delta → one unit per user → SCIM). AskCody is
    scim2-server behind a proxy that enforces its limit (a token bucket of ``--askcody-limit`` req/s,
    429 + ``Retry-After: 1`` beyond it); the reactor runs with ``askcody.max_requests_per_second``.
    Prints the wall time against the bound N creates / rate, the SCIM requests by method and per
    user, and the 429s seen.

(b) full sync: the initial users-delta round of M users (default 100,000) as the reconcile reads it
    (``GraphReader.users_delta_ids``, every id kept: the worst case, all users known to the store)
    over HTTP from a simulator running in its own process (so that its CPU is not counted). Prints
    the reader's CPU seconds (``time.process_time``), the shares in ``orjson.loads`` and the delta
    accumulator (the rest: HTTP, SDK adapter, paging), and the peak RSS (``resource.getrusage``)
    against the RSS before the round.

(c) initial sync with users already in AskCody: N users (``--users``) in one group in scope, the
    first ``--existing`` (default 500) of them created in AskCody beforehand by hand (a third with the
    Entra object id as externalId, a third with only the UPN as userName, a third with only the work
    e-mail), then ``reactor sync`` (the full sync, as the command runs it) with AskCody behind the
    same limiting proxy as (a). Prints users, created, adopted (by how they matched), duplicates in
    AskCody afterwards (users sharing an externalId or a userName: must be 0), the SCIM requests by
    method and per user, the Graph requests per user, the wall time against creates / rate, and the
    dead letters.

    python bench/sync.py [--users 10000] [--users-full 100000] [--rate 25] [--only a|b|c] [--workers N]
                         [--existing 500]

(a) is bound by the rate: 10,000 users at 25 req/s take at least 400 s, more with the lookups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from graphsim import GraphSimulator, running_simulator
from reactor import log
from reactor.commands import opened
from reactor.config import GraphSettings, GroupMapping, Secret, Settings, validate, with_overrides
from reactor.demo.stack import Stack, local_stack
from reactor.errors import ReactorError
from reactor.graph import client as graph_client
from reactor.graph import reader as graph_reader
from reactor.graph.client import GraphClient
from reactor.graph.reader import GraphReader
from reactor.ratelimit import TokenBucket
from reactor.store import SQLiteStore
from reactor.sync.engine import SyncEngine
from tests.support.eventually import eventually
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import scim_server

T = TypeVar("T")
TOKEN = "sim-token"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# (a) bulk add --------------------------------------------------------------------------------------


def askcody_limit(proxy: FaultProxy, rate: float) -> None:
    """Make the proxy answer 429 (Retry-After: 1) to every request beyond ``rate`` per second."""
    bucket = TokenBucket(rate)

    def over(_: ProxiedRequest) -> bool:
        return not bucket.try_acquire()

    proxy.fail(429, times=10**12, when=over, headers={"Retry-After": "1"}, detail="rate limit")


def bench_tenant(n: int) -> tuple[GraphSimulator, str, list[str]]:
    """A simulated tenant with ``n`` users and one (empty) group: the simulator, the group, the users."""
    sim = GraphSimulator(token=TOKEN)
    group = sim.add_group(display_name="Bench group")
    users = [
        sim.add_user(user_principal_name=f"u{i:06d}@contoso.com", display_name=f"User {i}", given_name="User",
                     surname=f"{i:06d}", mail=f"u{i:06d}@contoso.com", employee_org_data={"costCenter": "CC-1"})
        for i in range(n)
    ]
    return sim, group, users


def scim_counts(proxy: FaultProxy, before: Counter[tuple[str, str]]) -> Counter[str]:
    """SCIM requests sent through ``proxy`` since ``before``, by method."""
    by_method = Counter[str]()
    for (method, _), count in (proxy.requests - before).items():
        by_method[method] += count
    return by_method


def graph_http_requests(calls: Counter[str]) -> int:
    """Graph HTTP requests among the simulator's call counts (a read inside a ``$batch`` is not one)."""
    return sum(calls.values()) - 2 * calls.get("batched requests", 0)


@contextlib.asynccontextmanager
async def bulk_stack(
    n: int, rate: float, limit: float, tmp: Path, workers: int | None = None
) -> AsyncIterator[tuple[Stack, FaultProxy, Any, str, list[str]]]:
    sim, group, users = bench_tenant(n)
    async with scim_server() as server, fault_proxy(server.url) as proxy:
        askcody_limit(proxy, limit)
        async with local_stack(
            sim, {group: ("Bench group", "role")}, tmp / "reactor.db", scim_url=proxy.url, scim_token=server.token,
            askcody={"max_requests_per_second": rate},
            sync={"reconcile_interval_seconds": 86_400.0, **({"workers": workers} if workers else {})},
        ) as stack:
            yield stack, proxy, server, group, users


def upstream_timer(proxy: FaultProxy) -> defaultdict[str, float]:
    """Add up the seconds scim2-server takes to answer, per request kind (it shares this process)."""
    spent: defaultdict[str, float] = defaultdict(float)
    forward = proxy._forward

    async def timed(request: ProxiedRequest, headers: Any) -> Any:
        t = time.perf_counter()
        try:
            return await forward(request, headers)
        finally:
            kind = request.path.split("/")[1] + ("/{id}" if request.path.count("/") > 1 else "")
            spent[f"{request.method} /{kind}"] += time.perf_counter() - t
            spent[f"{request.method} /{kind} #"] += 1

    proxy._forward = timed  # type: ignore[method-assign,assignment]
    return spent


def showing_progress(check: Callable[[], bool], progress: Callable[[], str], every: float = 30.0) -> Callable[[], bool]:
    """``check``, printing ``progress()`` to stderr every ``every`` seconds while it does not hold."""
    started = shown = time.monotonic()

    def checked() -> bool:
        nonlocal shown
        if check():
            return True
        now = time.monotonic()
        if now - shown >= every:
            shown = now
            print(f"    ... {now - started:6.0f} s: {progress()}", file=sys.stderr, flush=True)
        return False

    return checked


async def bulk_add(n: int, rate: float, limit: float, timeout: float | None, workers: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        async with bulk_stack(n, rate, limit, Path(tmp_s), workers) as (stack, proxy, server, group, users):
            sim = stack.sim
            await eventually(
                lambda: len(sim.subscriptions) == 2 and stack.engine.last_reconcile_at is not None, "start-up", 60, 0.2
            )
            await eventually(lambda: stack.service.dispatcher.depth == 0, "start-up reconcile", 60, 0.2)
            requests_before, faulted_before, calls_before = proxy.requests.copy(), sum(proxy.faulted.values()), sim.calls.copy()
            upstream = upstream_timer(proxy)

            def members() -> int:
                found = server.resources("Group")
                return len(found[0].members or []) if found else 0

            def progress() -> str:
                sent = sum((proxy.requests - requests_before).values())
                return f"{members()} of {n} members, {sent} SCIM requests"

            started, cpu = time.monotonic(), time.process_time()
            for uid in users:
                sim.add_member(group, uid)
            limit_s = timeout if timeout is not None else n / rate * 20 + 300
            complete = True
            try:
                await eventually(
                    showing_progress(lambda: members() == n and stack.service.dispatcher.depth == 0, progress),
                    "all members", limit_s, 0.2, detail=progress,
                )
            except AssertionError as exc:
                print(f"    {exc}", flush=True)
                complete = False
            wall, cpu = time.monotonic() - started, time.process_time() - cpu
            done = members()

            by_method = scim_counts(proxy, requests_before)
            total = sum(by_method.values())
            throttled = sum(proxy.faulted.values()) - faulted_before
            graph = sim.calls - calls_before
            dead = len(await stack.service.store.dead_letters())
    bound = n / rate
    print(f"(a) {n} users added to one group, reactor at {rate:g} req/s, AskCody limit {limit:g} req/s, "
          f"sync.workers {workers or 'default'}"
          + ("" if complete else f"  -- INCOMPLETE: {done} of {n} members after {wall:.0f} s"))
    print(f"    wall time              {wall:9.1f} s")
    print(f"    bound (creates / rate) {bound:9.1f} s   wall / bound = {wall / bound:.2f}")
    print(f"    SCIM requests          {total:9d}     ({', '.join(f'{m} {c}' for m, c in sorted(by_method.items()))})")
    print(f"    SCIM requests per user {total / max(done, 1):9.2f}     bound by all requests: {total / rate:.1f} s, "
          f"wall / that = {wall / (total / rate):.2f}")
    print(f"    effective rate         {total / wall:9.1f} req/s")
    print(f"    429s seen              {throttled:9d}     dead letters: {dead}")
    print(f"    Graph calls            {dict(sorted(graph.items()))}")
    http_requests = graph_http_requests(graph)
    print(f"    Graph HTTP requests    {http_requests:7d}     ({http_requests / max(1, n):.3f} per new user; "
          f"{graph.get('batched requests', 0)} reads inside {graph.get('batch', 0)} $batch requests)")
    print(f"    process CPU            {cpu:9.1f} s   (reactor, simulator and scim2-server share this process)")
    answered = sum(v for k, v in upstream.items() if not k.endswith("#"))
    print(f"    scim2-server latency   {answered:9.1f} s   (summed over concurrent requests) of which:")
    for kind in sorted(k for k in upstream if not k.endswith("#")):
        times = upstream[kind + " #"]
        print(f"      {kind:22} {times:6.0f} x {upstream[kind] / times * 1000:7.1f} ms = {upstream[kind]:7.1f} s")


# (c) initial sync with users already in AskCody ---------------------------------------------------


async def seed_askcody(url: str, token: str, sim: GraphSimulator, users: list[str]) -> dict[str, tuple[str, str]]:
    """Create ``users`` in AskCody by hand, as Entra's own provisioning or an admin would have, in turn
    with the Entra object id as externalId, with the UPN as userName only, and with the work e-mail
    only (another userName, no externalId). Returns Entra id → (SCIM id, how it is matched)."""
    out: dict[str, tuple[str, str]] = {}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for i, uid in enumerate(users):
            user = sim.tenant.users[uid]
            how = ("externalId", "userName", "e-mail")[i % 3]
            body: dict[str, Any] = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user.user_principal_name if how != "e-mail" else f"admin-made-{i:06d}",
                "displayName": user.display_name, "active": True,
            }
            if how == "externalId":
                body["externalId"] = uid
            if how != "userName":
                body["emails"] = [{"value": user.mail, "type": "work", "primary": True}]
            r = await client.post("/Users", json=body)
            r.raise_for_status()
            out[uid] = (r.json()["id"], how)
    return out


async def initial_sync(n: int, existing: int, rate: float, limit: float) -> None:
    """``reactor sync`` (the full sync, as the command runs it) of ``n`` users in one group in scope,
    ``existing`` of them already in AskCody (:func:`seed_askcody`)."""
    sim, group, users = bench_tenant(n)
    for uid in users:
        sim.add_member(group, uid)
    with tempfile.TemporaryDirectory() as tmp_s:
        async with scim_server() as server, fault_proxy(server.url) as proxy, running_simulator(sim) as graph_url:
            seeded = await seed_askcody(server.url, server.token, sim, users[:existing])  # not through the proxy
            askcody_limit(proxy, limit)
            settings = validate(dataclasses.replace(
                with_overrides(
                    Settings(),
                    graph={"tenant_id": sim.tenant_id, "base_url": graph_url, "token": Secret(TOKEN)},
                    askcody={"scim_url": proxy.url, "token": Secret(server.token), "max_requests_per_second": rate},
                    store={"url": f"sqlite:///{Path(tmp_s) / 'reactor.db'}"},
                ),
                groups=(GroupMapping(id=group, askcody_group="Bench group", grants="role"),),
            ))
            before, faulted, calls = proxy.requests.copy(), sum(proxy.faulted.values()), sim.calls.copy()
            started = time.monotonic()
            failed = ""
            async with opened(settings) as (store, clients):
                assert clients is not None
                try:
                    plans = await SyncEngine(settings, store, clients.reader, clients.scim).full_sync()
                except ReactorError as exc:
                    plans, failed = [], f"  -- FAILED: {exc}"
                wall = time.monotonic() - started
                dead = len(await store.dead_letters())
            by_method = scim_counts(proxy, before)
            throttled = sum(proxy.faulted.values()) - faulted
            graph = sim.calls - calls
            held = server.resources("User")
            groups = server.resources("Group")
    by_external = Counter(str(u.external_id) for u in held if u.external_id)
    by_name = Counter(str(u.user_name).casefold() for u in held)
    duplicates = sum(c - 1 for c in by_external.values() if c > 1) + sum(c - 1 for c in by_name.values() if c > 1)
    entra_ids = set(users)
    ids = {str(u.id): str(u.external_id or "") for u in held}
    adopted = Counter(how for uid, (sid, how) in seeded.items() if ids.get(sid) == uid)
    seeded_ids = {sid for sid, _ in seeded.values()}
    created = sum(1 for sid, ext in ids.items() if ext in entra_ids and sid not in seeded_ids)
    members = len(groups[0].members or []) if groups else 0
    total = sum(by_method.values())
    creates = n - existing
    bound = creates / rate
    print(f"(c) initial sync (reactor sync) of {n} users in one group, {existing} of them already in AskCody, "
          f"reactor at {rate:g} req/s, AskCody limit {limit:g} req/s{failed}")
    print(f"    users in AskCody now   {len(held):9d}     group members {members}, plans applied {len(plans)}")
    print(f"    created                {created:9d}")
    print(f"    adopted                {sum(adopted.values()):9d}     of {existing} ("
          + ", ".join(f"matched by {how} {adopted[how]}" for how in ("externalId", "userName", "e-mail")) + ")")
    print(f"    duplicates             {duplicates:9d}     (users sharing an externalId or a userName)")
    print(f"    wall time              {wall:9.1f} s")
    print(f"    bound (creates / rate) {bound:9.1f} s   wall / bound = {wall / bound:.2f}")
    print(f"    SCIM requests          {total:9d}     ({', '.join(f'{m} {c}' for m, c in sorted(by_method.items()))})")
    per_user = ", ".join(f"{m} {c / n:.2f}" for m, c in sorted(by_method.items()))
    print(f"    SCIM requests per user {total / n:9.2f}     ({per_user})")
    print(f"    429s seen              {throttled:9d}     dead letters: {dead}")
    http_requests = graph_http_requests(graph)
    print(f"    Graph HTTP requests    {http_requests:9d}     ({http_requests / n:.3f} per user; {dict(sorted(graph.items()))})")


# (b) full users-delta round ------------------------------------------------------------------------


class Timed:
    """Wraps functions to add up the CPU seconds spent in them (``time.process_time``)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - t
                self.calls[name] += 1

        return timed


def seed_user(i: int) -> dict[str, Any]:
    """The i-th simulated user of a seed file (a GUID id that says its number)."""
    return {
        "id": f"{i:08d}-0000-4000-8000-000000000000", "user_principal_name": f"u{i:06d}@contoso.com",
        "display_name": f"User {i}", "given_name": "User", "surname": f"{i:06d}", "mail": f"u{i:06d}@contoso.com",
        "employee_org_data": {"costCenter": f"CC-{i % 50}"},
    }


@contextlib.contextmanager
def simulator_process(
    users: int, tmp: Path, *, tenant_id: str | None = None, group: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m graphsim`` seeded with ``users`` users (:func:`seed_user`), all of them members of
    ``group`` (a group id) when given; yields the Graph base URL and the process."""
    seed_file = tmp / "seed.json"
    with seed_file.open("wb") as out:  # written user by user: the bench's own peak RSS stays clean
        out.write(b'{"users": [')
        for i in range(users):
            out.write((b"," if i else b"") + orjson.dumps(seed_user(i)))
        out.write(b"]")
        if group is not None:
            members = [seed_user(i)["id"] for i in range(users)]
            out.write(b', "groups": ' + orjson.dumps([{"id": group, "display_name": "Bench group", "members": members}]))
        out.write(b"}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphsim", "--token", TOKEN, "--seed-file", str(seed_file),
         *(["--tenant-id", tenant_id] if tenant_id else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError("the simulator did not start")
        yield base_url, proc
    finally:
        proc.terminate()
        proc.wait(10)


async def full_round(users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_s, simulator_process(users, Path(tmp_s)) as (base_url, _):
        settings = with_overrides(Settings(), graph={"base_url": base_url, "token": Secret(TOKEN)})
        store = SQLiteStore(str(Path(tmp_s) / "reactor.db"))
        await store.open()
        timed = Timed()
        graph_client.orjson = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
            loads=timed.wrap("orjson.loads", orjson.loads), dumps=orjson.dumps, JSONDecodeError=orjson.JSONDecodeError)
        graph_reader._IdAcc.add = timed.wrap("delta accumulator", graph_reader._IdAcc.add)  # type: ignore[method-assign]
        client = GraphClient(GraphSettings(base_url=base_url, token=Secret(TOKEN)))
        try:
            reader = GraphReader(client, settings.attributes, settings.group_ids, store)
            await reader.get_user("00000000-0000-4000-8000-000000000000")  # warm up: imports, connection
            rss_before = rss_mib()
            cpu, wall = time.process_time(), time.monotonic()
            delta = await reader.users_delta_ids()
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            rss_after = rss_mib()
        finally:
            await client.aclose()
            await store.close()
    assert delta.full and len(delta.ids) == users, (delta.full, len(delta.ids))
    pages = timed.calls["orjson.loads"]
    print(f"(b) full users-delta round of {users} users over HTTP ({pages} pages), simulator in its own process")
    print(f"    wall time              {wall:9.2f} s")
    print(f"    reader CPU             {cpu:9.2f} s   ({cpu / users * 1e6:.1f} us per user)")
    rest = cpu
    for name in ("orjson.loads", "delta accumulator"):
        share = timed.seconds[name]
        rest -= share
        print(f"      {name:20} {share:9.2f} s   {share / cpu:6.1%}")
    print(f"      {'HTTP, SDK, paging':20} {rest:9.2f} s   {rest / cpu:6.1%}")
    print(f"    peak RSS               {rss_after:9.1f} MiB (before the round: {rss_before:.1f} MiB, "
          f"+{(rss_after - rss_before) * 1024 / users:.2f} KiB per user)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000, help="users added to the group in (a)")
    ap.add_argument("--users-full", type=int, default=100_000, help="users in the full round of (b)")
    ap.add_argument("--rate", type=float, default=25.0, help="askcody.max_requests_per_second of the reactor")
    ap.add_argument("--askcody-limit", type=float, default=None, help="AskCody's limit in req/s (default: --rate)")
    ap.add_argument("--only", choices=("a", "b", "c"), help="run one part")
    ap.add_argument("--existing", type=int, default=500, help="users already in AskCody before the initial sync of (c)")
    ap.add_argument("--workers", type=int, default=None, help="sync.workers of the reactor in (a) (default: the config's)")
    ap.add_argument("--timeout", type=float, default=None, help="give (a) up after this many seconds (default: 20 x bound + 300)")
    args = ap.parse_args()
    log.configure("error")
    # (b) first: its peak RSS is then not inflated by (a)'s in-process tenant and stack.
    if args.only in (None, "b"):
        asyncio.run(full_round(args.users_full))
    if args.only in (None, "a"):
        asyncio.run(bulk_add(args.users, args.rate, args.askcody_limit or args.rate, args.timeout, args.workers))
    if args.only in (None, "c"):
        asyncio.run(initial_sync(args.users, args.existing, args.rate, args.askcody_limit or args.rate))


if __name__ == "__main__":
    main()
