"""``/readyz`` follows the AskCody SCIM target: 503 naming the ``askcody`` check while the target is
down, 200 once it is back; ``/healthz`` stays 200 throughout; remote checks are not hammered."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.support.faultproxy import fault_proxy
from tests.support.scim_server import build_application, scim_server
from tests.support.servers import free_port, serve_asgi
from tests.support.tenant_names import Eventually, StackFactory


class Probe:
    """Polls ``/readyz`` and ``/healthz`` together; every ``/healthz`` answer is kept."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.health: list[int] = []
        self.last: tuple[int, dict[str, Any]] = (0, {})

    async def ready_is(self, status: int) -> bool:
        health = await self.client.get("/healthz")
        self.health.append(health.status_code)
        r = await self.client.get("/readyz")
        self.last = (r.status_code, r.json())
        return r.status_code == status


@contextlib.asynccontextmanager
async def probing(url: str) -> AsyncIterator[Probe]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Probe(client)


class ScimTarget:
    """scim2-server in memory, which can be stopped and started again on the same port with its data."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(16)
        self.app = build_application(self.token)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v2"
        self._server: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        self._server = contextlib.AsyncExitStack()
        await self._server.enter_async_context(serve_asgi(self.app, self.port))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.aclose()
            self._server = None


@contextlib.asynccontextmanager
async def scim_target() -> AsyncIterator[ScimTarget]:
    target = ScimTarget()
    await target.start()
    try:
        yield target
    finally:
        await target.stop()


async def test_readiness_follows_the_scim_target_and_liveness_does_not(make_stack: StackFactory, wait: Eventually) -> None:
    async with scim_target() as scim, make_stack(scim_url=scim.url, scim_token=scim.token) as stack, probing(
        stack.admin_url
    ) as probe:
        await wait(lambda: probe.ready_is(200), "ready with AskCody up")
        body = probe.last[1]
        assert body["status"] == "ready"
        assert set(body["checks"]) == {
            "store", "workers", "subscriptions", "askcody", "graph", "backlog", "dead_letters", "replicas"
        }
        assert body["checks"]["replicas"]["reason"] == "single node (SQLite): this replica leads"
        for name, check in body["checks"].items():
            assert check["ok"] is True, (name, check)
            assert check["reason"], name
        assert {n for n, c in body["checks"].items() if c["fatal"]} == {"store", "workers", "askcody"}

        await scim.stop()  # AskCody goes away: connection refused
        await wait(lambda: probe.ready_is(503), "not ready with AskCody down")
        body = probe.last[1]
        assert body["status"] == "not ready"
        askcody = body["checks"]["askcody"]
        assert askcody["ok"] is False and askcody["fatal"] is True
        assert "AskCody SCIM not reachable" in askcody["reason"], askcody
        assert [n for n, c in body["checks"].items() if not c["ok"]] == ["askcody"]

        await scim.start()  # back, same address and data
        await wait(lambda: probe.ready_is(200), "ready again with AskCody back")
    assert len(probe.health) >= 3 and set(probe.health) == {200}


async def test_scim_errors_make_readiness_fail_with_a_reason_and_are_cached(make_stack: StackFactory, wait: Eventually) -> None:
    async with scim_server() as scim, fault_proxy(scim.url) as proxy, make_stack(
        scim_url=proxy.url, scim_token=scim.token
    ) as stack, probing(stack.admin_url) as probe:
        await wait(lambda: probe.ready_is(200), "ready with AskCody up")

        # A burst of probes (people refreshing the status page, the platform's probe) within the
        # cache window asks AskCody at most once.
        pings = proxy.count("GET", "/Users")
        answers = await asyncio.gather(*(probe.client.get("/readyz") for _ in range(20)), probe.client.get("/"))
        assert {r.status_code for r in answers} == {200}
        assert proxy.count("GET", "/Users") - pings <= 1

        outage = proxy.unavailable(times=1_000_000)
        await wait(lambda: probe.ready_is(503), "not ready while AskCody answers 503")
        reason = probe.last[1]["checks"]["askcody"]["reason"]
        assert "503" in reason, reason
        page = (await probe.client.get("/")).text
        assert "Not ready" in page and "AskCody SCIM not reachable" in page

        outage.times = outage.hits
        await wait(lambda: probe.ready_is(200), "ready again once AskCody answers")
        assert set(probe.health) == {200}

