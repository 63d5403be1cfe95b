"""Fixtures for the subscription tests: a simulated clock shared by the Graph simulator and the
manager, the simulator over real HTTP, a real Starlette receiver answering the validation handshake
(served by uvicorn in the test loop), a SQLite store and a manager factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from graphsim import GraphSimulator, running_simulator
from reactor import retry
from reactor.backoff import Backoff
from reactor.config import GraphSettings, Secret, ServerSettings, Settings, SubscriptionSettings
from reactor.graph.client import GraphClient
from reactor.store.sqlite import SQLiteStore
from subscriptions.manager import SubscriptionManager
from tests.support.servers import serve_asgi

TENANT = "6f3c2a10-0000-4000-8000-00000000c0de"
TOKEN = "sim-test-token"


class Clock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """The reactor's two webhook routes, reduced to the handshake and a record of what arrived.

    With ``healthy`` False the handshake fails (as when ``public_url`` is unreachable)."""

    def __init__(self) -> None:
        self.healthy = True
        self.items: dict[str, list[dict[str, Any]]] = {"notifications": [], "lifecycle": []}
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return PlainTextResponse(token) if self.healthy else Response(status_code=503)
        body = await request.json()
        self.items.setdefault(request.url.path.strip("/"), []).extend(body.get("value", []))
        return Response(status_code=202)


class Gaps(list[str]):
    """Records every ``on_gap`` reason."""

    async def __call__(self, reason: str) -> None:
        self.append(reason)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> GraphSimulator:
    return GraphSimulator(tenant_id=TENANT, token=TOKEN, clock=clock)


@pytest.fixture
async def graph_url(sim: GraphSimulator) -> AsyncIterator[str]:
    async with running_simulator(sim, host="127.0.0.1", port=0) as base_url:
        yield base_url


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def receiver_url(receiver: Receiver) -> AsyncIterator[str]:
    async with serve_asgi(receiver.app) as url:
        yield url


@pytest.fixture(autouse=True)
def no_retry_sleeps() -> Iterator[None]:
    with retry.testing():
        yield


@pytest.fixture
async def client(graph_url: str) -> AsyncIterator[GraphClient]:
    graph = GraphClient(GraphSettings(tenant_id=TENANT, base_url=graph_url, token=Secret(TOKEN)))
    try:
        yield graph
    finally:
        await graph.aclose()


@pytest.fixture
def gaps() -> Gaps:
    return Gaps()


@pytest.fixture
def settings(receiver_url: str, graph_url: str) -> Settings:
    return Settings(
        server=ServerSettings(public_url=receiver_url),
        graph=GraphSettings(tenant_id=TENANT, base_url=graph_url, token=Secret(TOKEN)),
        subscriptions=SubscriptionSettings(),
    )


@pytest.fixture
def make_manager(
    client: GraphClient, store: SQLiteStore, settings: Settings, clock: Clock, gaps: Gaps
) -> Callable[..., SubscriptionManager]:
    """``make_manager(**overrides)``: a manager on the shared clock, recording gaps, with fixed backoff."""

    def build(**overrides: Any) -> SubscriptionManager:
        chosen = overrides.pop("settings", settings)
        kwargs: dict[str, Any] = {"clock": clock, "on_gap": gaps, "backoff": Backoff(initial=60, maximum=60, jitter=0.5)}
        kwargs.update(overrides)
        return SubscriptionManager(client, store, chosen, **kwargs)

    return build
