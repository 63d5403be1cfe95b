"""A whole installation for the fault proofs, with the reactor as a real ``reactor serve`` process.

In the test's event loop, over loopback HTTP: the Graph simulator (every Graph request it answers is
recorded, see :class:`GraphLog`), scim2-server, and a fault proxy in front of scim2-server. The
reactor is a subprocess with a config file pointing at them, subscriptions enabled (it subscribes to
the simulator, which then notifies it), its own SQLite store, its stdout and stderr captured to one
log file. It can be killed with SIGKILL and started again on the same port and store.

    async with process_rig(tmp_path, seed=1) as rig:
        rig.driver.apply(Op("add_member", 3, 1))
        seconds = await rig.converge(timeout=30)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from graphsim import GraphSimulator
from graphsim.app import build_app
from graphsim.server import serving
from tests.proofs.entra_ops import TenantDriver, random_ops
from tests.support.eventually import eventually
from tests.support.expected import Oracle, describe, diff, read_askcody, rules_from
from tests.support.faultproxy import FaultProxy
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.scim_server import build_application
from tests.support.servers import free_port, serve_asgi

GROUPS = (("Facility Management", "role"), ("Reception Copenhagen", "reception"), ("Catering", "service_provider"))


@dataclass(frozen=True)
class GraphCall:
    started: float
    ended: float
    method: str
    target: str
    """Path and query string."""
    status: int
    retry_after: float | None


class GraphLog:
    """ASGI middleware in front of the simulator that records every request it answers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[GraphCall] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1.0/"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        seen: dict[str, Any] = {}

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
                seen["retry_after"] = float(headers["retry-after"]) if "retry-after" in headers else None
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            query = scope.get("query_string", b"").decode()
            self.calls.append(
                GraphCall(started, time.monotonic(), scope["method"], scope["path"] + (f"?{query}" if query else ""),
                          seen.get("status", 0), seen.get("retry_after"))
            )


class ProxyServer:
    """Serves a :class:`FaultProxy` on a fixed port and can take it off the network (connections
    refused, as when AskCody is down) and put it back on the same port."""

    def __init__(self, proxy: FaultProxy, port: int) -> None:
        self.proxy = proxy
        self.port = port
        self._stack: contextlib.AsyncExitStack | None = None

    async def up(self) -> None:
        if self._stack is None:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(serve_asgi(self.proxy, self.port))
            self._stack = stack

    async def down(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


@dataclass
class Rig:
    """The running installation of one proof; see the module docstring."""

    tmp: Path
    sim: GraphSimulator
    graph_url: str
    graph_log: GraphLog
    scim_app: Any
    scim_url: str
    """scim2-server itself (the tests read it here; the reactor goes through the proxy)."""
    proxy: FaultProxy
    proxy_server: ProxyServer
    groups: dict[str, tuple[str, str]]
    oracle: Oracle
    driver: TenantDriver
    reactor: ReactorProcess
    config: Path
    db: Path
    secrets: dict[str, str]
    rng: random.Random
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    # the reactor process ---------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.reactor.start, 60.0)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, nothing."""
        await asyncio.to_thread(self.reactor.kill)

    async def stop(self) -> int | None:
        """SIGTERM and wait for a clean exit; the exit code (None when it was not running)."""
        if self.reactor.proc is None or self.reactor.proc.poll() is not None:
            return None
        return await asyncio.to_thread(self.reactor.terminate, 40.0)

    @property
    def running(self) -> bool:
        return self.reactor.proc is not None and self.reactor.proc.poll() is None

    def log_text(self) -> str:
        return self.reactor.log.read_text(errors="replace") if self.reactor.log.exists() else ""

    def log_tail(self) -> str:
        """The end of the reactor's log, for a failure message."""
        return f"--- reactor log ---\n{self.log_text()[-3000:]}"

    # AskCody and the oracle ------------------------------------------------------------------
    @property
    def scim_token(self) -> str:
        return self.secrets["askcody_token"]

    async def problems(self) -> list[str]:
        return diff(self.oracle.expected(self.sim), await read_askcody(self.scim_url, self.scim_token))

    async def converge(self, timeout: float) -> float:
        """Poll until scim2-server holds what the oracle expects; the seconds it took.
        On timeout: AssertionError with the differences and the end of the reactor's log."""
        started = time.monotonic()
        problems: list[str] = []

        async def converged() -> bool:
            nonlocal problems
            problems = await self.problems()
            return not problems

        await eventually(converged, "convergence", timeout, 0.2, detail=lambda: f"{describe(problems)}\n{self.log_tail()}")
        self.oracle.passed(self.oracle.expected(self.sim))
        return time.monotonic() - started

    async def lost(self, timeout: float) -> tuple[int, float | None]:
        """Like :meth:`converge` but for reports: (differences left, seconds or None); the
        differences left are kept in :attr:`left`."""
        try:
            return 0, await self.converge(timeout)
        except AssertionError:
            self.left = await self.problems()
            self.left.extend(self.diagnose(self.left))
            return len([p for p in self.left if not p.startswith("diagnosis")]), None

    def diagnose(self, problems: list[str]) -> list[str]:
        """For each user named in ``problems``: the reactor's stored memberships and mapping, the ops on it."""
        lines = []
        for uid in sorted({p.split()[1].rstrip(":") for p in problems if p.startswith("user ")}):
            stored = [r[0] for r in self._query("SELECT group_id FROM members WHERE user_id = ?", uid)]
            mapped = self._query("SELECT scim_id FROM mappings WHERE kind = 'user' AND entra_id = ?", uid)
            ops = [op for op in self.driver.applied if uid in op]
            lines.append(f"diagnosis {uid}: store groups {stored}, mapping {mapped}, ops {ops}")
        return lines

    @contextlib.asynccontextmanager
    async def proxy_down(self, mode: str = "refused") -> AsyncIterator[None]:
        """AskCody is down inside the block: connections ``refused``, or every request answered ``503``."""
        if mode == "refused":
            await self.proxy_server.down()
            try:
                yield
            finally:
                await self.proxy_server.up()
            return
        outage = {"on": True}
        self.proxy.fail(503, 10**9, when=lambda _: outage["on"])
        try:
            yield
        finally:
            outage["on"] = False

    # the reactor's store (read-only peeks while it runs) -------------------------------------
    def _query(self, sql: str, *params: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as c:
            return c.execute(sql, params).fetchall()

    def dead_letters(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM dead_letters")[0][0])

    def journal_seq(self) -> int:
        """The last journal sequence number ever handed out (survives the deletion of done entries)."""
        rows = self._query("SELECT seq FROM sqlite_sequence WHERE name = 'journal'")
        return int(rows[0][0]) if rows else 0

    def pending(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM journal")[0][0])

    # misc ------------------------------------------------------------------------------------
    async def burst(self, ops: int, *, pause: float = 0.03, on_step: Callable[[int], Awaitable[None]] | None = None) -> int:
        """Apply ``ops`` random Entra operations, ``pause`` seconds apart at most; returns how many applied."""
        applied = 0
        for i, op in enumerate(random_ops(self.rng, ops)):
            if on_step is not None:
                await on_step(i)
            if self.driver.apply(op):
                applied += 1
            await asyncio.sleep(self.rng.uniform(0, pause))
        return applied


def reactor_sections(
    *, port: int, tenant_id: str, graph_url: str, scim_url: str, secrets_: dict[str, str], db: Path,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}", "log_level": "info"},
        "graph": {
            "tenant_id": tenant_id, "base_url": graph_url, "token": secrets_["graph_token"],
            "client_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "client_secret": secrets_["graph_client_secret"],
        },
        "askcody": {"scim_url": scim_url, "token": secrets_["askcody_token"], "timeout_seconds": 5.0},
        "store": {"url": f"sqlite:///{db}"},
        "sync": {"reconcile_interval_seconds": 600.0, "workers": 4, "max_attempts": 4, "retry_horizon_seconds": 20.0},
        "subscriptions": {"enabled": True},
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    return sections


@contextlib.asynccontextmanager
async def process_rig(
    tmp: Path, *, seed: int, users: int = 8, overrides: dict[str, dict[str, Any]] | None = None,
    start: bool = True, converge_timeout: float = 60.0,
) -> AsyncIterator[Rig]:
    """Simulator + scim2-server + fault proxy in this loop, ``reactor serve`` as a subprocess.

    With ``start`` the reactor is started and the fixture waits until it subscribed and AskCody
    holds the seeded tenant; the secrets are random per rig (see :attr:`Rig.secrets`)."""
    rng = random.Random(seed)
    secret_values = {
        "graph_token": "gt-" + secrets.token_urlsafe(24),
        "graph_client_secret": "gcs-" + secrets.token_urlsafe(24),
        "askcody_token": "act-" + secrets.token_urlsafe(24),
    }
    sim = GraphSimulator(token=secret_values["graph_token"])
    sim.faults.seed(seed)
    sim.delivery.retry_max_delay = 1.0  # Graph backs off for hours; the proofs compress its redelivery
    groups = {sim.add_group(display_name=f"Entra {name}"): (name, grants) for name, grants in GROUPS}
    sim.add_group(display_name="Not in scope")
    oracle = Oracle(rules_from(groups))
    driver = TenantDriver(sim, oracle, list(groups), salt=seed + 1)
    driver.seed(users, rng)
    graph_log = GraphLog(build_app(sim))
    scim_app = build_application(secret_values["askcody_token"])
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "reactor.db"
    await sim.start()
    try:
        async with serving(graph_log) as graph_root, serve_asgi(scim_app) as scim_root:
            scim_url = scim_root + "/v2"
            proxy = FaultProxy(scim_url)
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                proxy._session = session
                proxy_server = ProxyServer(proxy, free_port())
                await proxy_server.up()
                proxy.url = f"http://127.0.0.1:{proxy_server.port}/v2"
                port = free_port()
                sections = reactor_sections(
                    port=port, tenant_id=sim.tenant_id, graph_url=graph_root + "/v1.0", scim_url=proxy.url,
                    secrets_=secret_values, db=db, overrides=overrides,
                )
                config = write_config(
                    tmp / "reactor.toml", sections,
                    [{"id": gid, "askcody_group": name, "grants": grants} for gid, (name, grants) in groups.items()],
                )
                reactor = ReactorProcess(config, port, log=tmp / "reactor.log")
                rig = Rig(tmp, sim, graph_root + "/v1.0", graph_log, scim_app, scim_url, proxy, proxy_server, groups, oracle,
                          driver, reactor, config, db, secret_values, rng, sections)
                try:
                    if start:
                        await rig.start()
                        await eventually(
                            lambda: len(sim.subscriptions) == 2, "the reactor subscribes", 30, 0.05, detail=rig.log_tail
                        )
                        await rig.converge(converge_timeout)
                    yield rig
                finally:
                    with contextlib.suppress(Exception):
                        await rig.stop()
                    await rig.kill()
                    await proxy_server.down()
    finally:
        await sim.stop()
