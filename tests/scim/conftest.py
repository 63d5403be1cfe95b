"""Fixtures of the SCIM client tests: the real scim2-server over HTTP, and retries without sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from reactor import retry
from reactor.config import AskCodySettings, Dialect, Secret
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient
from tests.support.scim_server import ScimServer, scim_server


@pytest.fixture(autouse=True)
def no_retry_sleeps() -> Iterator[None]:
    with retry.testing():
        yield


def askcody(url: str, token: str, dialect: Dialect = "rfc", **kw: object) -> AskCodySettings:
    return AskCodySettings(scim_url=url, token=Secret(token), dialect=dialect, **kw)  # type: ignore[arg-type]


@pytest.fixture
def settings_for() -> Callable[..., AskCodySettings]:
    """``settings_for(url, token, dialect="rfc", **more)``: the ``[askcody]`` settings of a test target."""
    return askcody


@pytest.fixture
async def server() -> AsyncIterator[ScimServer]:
    async with scim_server() as running:
        yield running


@pytest.fixture
async def client(server: ScimServer) -> AsyncIterator[AskCodyClient]:
    async with AskCodyClient(askcody(server.url, server.token), TokenBucket(10_000)) as c:
        yield c


async def group_members(client: AskCodyClient, scim_id: str) -> frozenset[str]:
    """The SCIM ids of a group's members, read from AskCody (what a test checks it holds)."""
    data = await client.request("GET", f"/Groups/{scim_id}", params={"attributes": "members"})
    assert isinstance(data, dict)
    return frozenset(m["value"] for m in data.get("members") or [])
