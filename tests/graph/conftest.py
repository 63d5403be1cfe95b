"""Fixtures for the Graph client and reader: the Graph simulator over real HTTP, a SQLite store,
and retries without sleeps (``reactor.retry.testing``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import aiohttp
import pytest

from graphsim import GraphSimulator, running_simulator
from reactor import retry
from reactor.config import AttributeSettings, GraphSettings, GroupMapping, Secret, Settings
from reactor.graph.client import GraphClient
from reactor.graph.reader import GraphReader
from reactor.store.sqlite import SQLiteStore

TENANT = "6f3c2a10-0000-4000-8000-00000000c0de"
TOKEN = "sim-test-token"


@pytest.fixture(autouse=True)
def no_retry_sleeps() -> Iterator[None]:
    """The retry policy's testing switch: waits are computed and recorded, not slept."""
    with retry.testing():
        yield


@pytest.fixture
def sim() -> GraphSimulator:
    return GraphSimulator(tenant_id=TENANT, token=TOKEN)


@pytest.fixture
async def graph_url(sim: GraphSimulator) -> AsyncIterator[str]:
    async with running_simulator(sim, host="127.0.0.1", port=0) as base_url:
        yield base_url


@pytest.fixture
def graph_settings(graph_url: str) -> GraphSettings:
    return GraphSettings(tenant_id=TENANT, base_url=graph_url, token=Secret(TOKEN))


@pytest.fixture
def sent() -> list[tuple[str, str]]:
    """``(method, url)`` of every request the ``client`` fixture sent, in order, the URL as sent."""
    return []


@pytest.fixture
async def client(graph_settings: GraphSettings, sent: list[tuple[str, str]]) -> AsyncIterator[GraphClient]:
    """A GraphClient on the simulator, on an aiohttp session that records each request into ``sent``."""

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append((params.method, str(params.url)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session, GraphClient(graph_settings, session=session) as graph:
        yield graph


def make_settings(
    graph: GraphSettings, *, cost_center: str = "employeeOrgData/costCenter", groups: tuple[str, ...] = ()
) -> Settings:
    return Settings(
        graph=graph,
        attributes=AttributeSettings(cost_center=cost_center),
        groups=tuple(GroupMapping(id=g) for g in groups),
    )


@pytest.fixture
def reader_for(client: GraphClient, store: SQLiteStore, graph_settings: GraphSettings):  # type: ignore[no-untyped-def]
    """A factory: ``reader_for(cost_center=..., groups=(...), page_size=...)``."""

    def build(
        *, cost_center: str = "employeeOrgData/costCenter", groups: tuple[str, ...] = (), page_size: int = 999
    ) -> GraphReader:
        settings = make_settings(graph_settings, cost_center=cost_center, groups=groups)
        return GraphReader(client, settings.attributes, settings.group_ids, store, page_size=page_size)

    return build
