"""Fixtures for the Graph simulator tests: a manual clock, a served simulator, a Graph client, and
a tiny subscriber app (notification and lifecycle endpoints) served the same way."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from graphsim import GraphSimulator, running_simulator
from graphsim.server import serving
from graphsim.timestamps import to_iso

TENANT_ID = "11111111-2222-3333-4444-555555555555"
TOKEN = "sim-token"
SSL_CONTEXT = ssl.create_default_context()
"""Shared: building one per client costs ~0.1 s (the simulator itself speaks plain http)."""


class ManualClock:
    """Epoch seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """The subscriber side: answers handshakes (``handshake`` = echo, wrong, hang, error) and records posts."""

    def __init__(self) -> None:
        self.url = ""
        self.status = 202
        self.fail_next = 0
        """Answer this many notification posts with 500 before accepting."""
        self.handshake = "echo"
        self.handshake_tokens: list[str] = []
        self.raw_queries: list[str] = []
        self.batches: list[list[dict[str, Any]]] = []
        self.lifecycle: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        """Set on teardown so that hanging handshakes end."""
        self.app = Starlette(
            routes=[
                Route("/notifications", self._notifications, methods=["POST"]),
                Route("/lifecycle", self._lifecycle, methods=["POST"]),
            ]
        )

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for batch in self.batches for item in batch]

    async def _validate(self, request: Request) -> Response:
        token = request.query_params["validationToken"]
        self.handshake_tokens.append(token)
        self.raw_queries.append(request.url.query)
        if self.handshake == "hang":
            await self.release.wait()
        if self.handshake == "wrong":
            return PlainTextResponse(token.strip() + "x")
        if self.handshake == "error":
            return PlainTextResponse("nope", status_code=500)
        return PlainTextResponse(token)

    async def _notifications(self, request: Request) -> Response:
        if "validationToken" in request.query_params:
            return await self._validate(request)
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=500)
        if self.status < 300:
            self.batches.append(orjson.loads(await request.body())["value"])
        return Response(status_code=self.status)

    async def _lifecycle(self, request: Request) -> Response:
        if "validationToken" in request.query_params:
            return await self._validate(request)
        self.lifecycle.extend(orjson.loads(await request.body())["value"])
        return Response(status_code=202)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> GraphSimulator:
    simulator = GraphSimulator(tenant_id=TENANT_ID, token=TOKEN, clock=clock)
    simulator.delivery.batch_window = 0.01
    simulator.delivery.retry_base = 0.01
    simulator.delivery.retry_max_delay = 0.05
    simulator.faults.seed(7)
    return simulator


@pytest.fixture
async def base_url(sim: GraphSimulator) -> AsyncIterator[str]:
    async with running_simulator(sim) as url:
        yield url


@pytest.fixture
async def graph(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=15, verify=SSL_CONTEXT) as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    async with serving(recv.app) as root:
        recv.url = root
        try:
            yield recv
        finally:
            recv.release.set()


Subscribe = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def subscribe(graph: httpx.AsyncClient, receiver: Receiver, clock: ManualClock) -> Subscribe:
    """POST /subscriptions for ``resource`` pointing at the receiver; keyword arguments override the body."""

    async def create(resource: str = "users", **overrides: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "changeType": "updated,deleted",
            "notificationUrl": f"{receiver.url}/notifications",
            "lifecycleNotificationUrl": f"{receiver.url}/lifecycle",
            "resource": resource,
            "expirationDateTime": to_iso(clock() + 3 * 24 * 3600),
            "clientState": "s3cret",
        }
        body.update(overrides)
        return await graph.post("/subscriptions", json={k: v for k, v in body.items() if v is not None})

    return create
