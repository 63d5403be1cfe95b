"""What GraphClient's own transport (aiohttp) does that msgraph-sdk's pipeline did for it, against a
small Starlette app on loopback over real HTTP: the headers of each request, redirects not followed
(and no token sent to another host), a credential's token cached and fetched again before it expires,
one fetch at a time, and a refused credential reported without a secret."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from reactor import __version__
from reactor.config import GraphSettings, Secret
from reactor.errors import PermanentError
from reactor.graph.auth import REFRESH_MARGIN, BearerToken
from reactor.graph.client import GraphClient
from tests.support.servers import serve_asgi

TOKEN = "static-transport-token"


@dataclass
class Seen:
    """Every request the app got: ``(method, path, headers)``; and the tokens it handed out."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    issued: int = 0
    other: str = ""
    """The base URL of a second server (another origin) that a redirect points to."""


def graph_app(seen: Seen) -> Starlette:
    async def record(request: Request) -> None:
        await request.body()
        seen.requests.append((request.method, request.url.path, dict(request.headers)))

    async def user(request: Request) -> Response:
        await record(request)
        return JSONResponse({"id": request.path_params["id"]})

    async def create(request: Request) -> Response:
        await record(request)
        return JSONResponse({"id": "s1"}, status_code=201)

    async def away(request: Request) -> Response:
        await record(request)
        return RedirectResponse(f"{seen.other}/v1.0/users/stolen", status_code=302)

    async def here(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/v1.0/users/moved", status_code=301)

    async def token(request: Request) -> Response:
        seen.issued += 1
        return JSONResponse({"access_token": f"issued-{seen.issued}"})

    return Starlette(routes=[
        Route("/v1.0/users/{id}", user, methods=["GET"]),
        Route("/v1.0/subscriptions", create, methods=["POST"]),
        Route("/v1.0/away", away, methods=["GET"]),
        Route("/v1.0/here", here, methods=["GET"]),
        Route("/token", token, methods=["POST"]),
    ])


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, Seen, Seen]]:
    """The Graph stand-in (base URL ``…/v1.0``) and what it saw, and what another origin saw."""
    seen, elsewhere = Seen(), Seen()
    async with serve_asgi(graph_app(seen)) as url, serve_asgi(graph_app(elsewhere)) as other:
        seen.other = other
        yield f"{url}/v1.0", seen, elsewhere


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class TokenEndpointCredential:
    """An azure-identity style credential that asks the app's ``/token`` over HTTP (as a real one asks
    Entra ID), for tokens valid ``lifetime`` seconds by ``clock``."""

    def __init__(self, token_url: str, clock: ManualClock, lifetime: float = 3600.0) -> None:
        self.token_url = token_url
        self.clock = clock
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        async with aiohttp.ClientSession() as session, session.post(self.token_url) as resp:
            issued = (await resp.json())["access_token"]
        return AccessToken(issued, int(self.clock() + self.lifetime))

    async def close(self) -> None:
        return None


def credential_client(base: str, lifetime: float) -> tuple[ManualClock, TokenEndpointCredential, GraphClient]:
    """A client whose tokens come from the app's ``/token`` (valid ``lifetime`` seconds), on a manual clock."""
    clock = ManualClock()
    credential = TokenEndpointCredential(base.removesuffix("/v1.0") + "/token", clock, lifetime=lifetime)
    settings = GraphSettings(tenant_id="t", client_id="c", client_secret=Secret("s"), base_url=base)
    return clock, credential, GraphClient(settings, credential=credential, clock=clock)  # type: ignore[arg-type]


def authorization(seen: Seen) -> list[str]:
    return [headers.get("authorization", "") for _, _, headers in seen.requests]


async def test_each_request_carries_a_client_request_id_a_user_agent_and_json_headers(
    servers: tuple[str, Seen, Seen],
) -> None:
    base, seen, _ = servers
    async with GraphClient(GraphSettings(base_url=base, token=Secret(TOKEN))) as graph:
        assert await graph.get_json("users/u1") == {"id": "u1"}
        assert await graph.get_json("users/u2") == {"id": "u2"}
        assert await graph.post_json("subscriptions", {"resource": "users"}) == {"id": "s1"}
    ids = [headers["client-request-id"] for _, _, headers in seen.requests]
    assert len(set(ids)) == 3 and all(str(uuid.UUID(i)) == i for i in ids), ids
    for method, _, headers in seen.requests:
        assert headers["user-agent"] == f"askcody-entra-reactor/{__version__}"
        assert headers["accept"] == "application/json"
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert ("content-type" in headers) == (method == "POST")
    assert seen.requests[2][2]["content-type"] == "application/json"


async def test_a_redirect_is_not_followed_and_no_token_leaves_our_origin(servers: tuple[str, Seen, Seen]) -> None:
    base, seen, elsewhere = servers
    async with GraphClient(GraphSettings(base_url=base, token=Secret(TOKEN))) as graph:
        with pytest.raises(PermanentError) as away:
            await graph.get_json("away")
        with pytest.raises(PermanentError) as here:
            await graph.get_json("here")
    assert away.value.status == 302 and here.value.status == 301
    assert [path for _, path, _ in seen.requests] == ["/v1.0/away", "/v1.0/here"], "neither redirect followed"
    assert elsewhere.requests == []
    assert TOKEN not in str(away.value) + str(here.value)


async def test_the_token_goes_only_to_our_origin() -> None:
    bearer = BearerToken(GraphSettings(base_url="https://graph.microsoft.com/v1.0", token=Secret("tok")))
    assert await bearer.header("https://graph.microsoft.com/v1.0/users") == "Bearer tok"
    for url in ("https://elsewhere.example.com/v1.0/users", "http://graph.microsoft.com/v1.0/users",
                "https://graph.microsoft.com:8443/v1.0/users"):
        assert await bearer.header(url) is None, url
    assert "tok" not in repr(bearer)


async def test_a_credential_token_is_cached_then_fetched_again_before_it_expires(servers: tuple[str, Seen, Seen]) -> None:
    base, seen, _ = servers
    clock, credential, client = credential_client(base, lifetime=3600)
    async with client as graph:
        await asyncio.gather(*(graph.get_json(f"users/u{i}") for i in range(10)))
        assert seen.issued == 1, "ten requests at once, one token fetched"
        clock.now += 3600 - REFRESH_MARGIN - 1
        await graph.get_json("users/still-cached")
        assert seen.issued == 1
        clock.now += 2  # within the margin: fetched again, before the token expires
        await asyncio.gather(*(graph.get_json(f"users/v{i}") for i in range(5)))
        assert seen.issued == 2
    assert authorization(seen) == ["Bearer issued-1"] * 11 + ["Bearer issued-2"] * 5
    assert credential.scopes == [("https://127.0.0.1/.default",)] * 2


class RefusingCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")

    async def close(self) -> None:
        return None


async def test_a_refused_credential_is_a_permanent_401_and_nothing_is_sent(servers: tuple[str, Seen, Seen]) -> None:
    base, seen, _ = servers
    settings = GraphSettings(tenant_id="t", client_id="c", client_secret=Secret("the-secret"), base_url=base)
    async with GraphClient(settings, credential=RefusingCredential()) as graph:  # type: ignore[arg-type]
        with pytest.raises(PermanentError) as info:
            await graph.get_json("users/u1", retry=False)
    assert info.value.status == 401
    assert str(info.value).startswith("Graph authentication failed: AADSTS7000215")
    assert "the-secret" not in str(info.value)
    assert seen.requests == []


async def test_a_given_session_is_used_and_left_open(servers: tuple[str, Seen, Seen]) -> None:
    base, seen, _ = servers
    async with aiohttp.ClientSession() as session:
        async with GraphClient(GraphSettings(base_url=base, token=Secret(TOKEN)), session=session) as graph:
            await graph.get_json("users/u1")
        assert not session.closed
    assert len(seen.requests) == 1


async def test_a_short_lived_token_is_fetched_again_half_way_through_its_life(servers: tuple[str, Seen, Seen]) -> None:
    base, seen, _ = servers
    clock, _, client = credential_client(base, lifetime=120)
    async with client as graph:
        await graph.get_json("users/u1")
        clock.now += 59
        await graph.get_json("users/u2")
        clock.now += 1
        await graph.get_json("users/u3")
    assert authorization(seen) == ["Bearer issued-1", "Bearer issued-1", "Bearer issued-2"]
