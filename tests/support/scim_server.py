"""The real scim2-server, served over HTTP on loopback for the tests.

``async with scim_server() as server:`` serves scim2-server's ASGI application (its default RFC 7643
schemas, which include the enterprise User extension, and in-memory storage) with uvicorn in the
running event loop, on ``127.0.0.1`` and a free port, refusing requests without the bearer token.
``server.url`` is the SCIM base URL (``http://127.0.0.1:<port>/v2``); ``server.storage`` lets a test
look at what the server holds without going through HTTP.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from scim2_models import ScimProvider
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import load_default_resource_types, load_default_schemas, load_default_service_provider_config
from servers import serve_asgi


class BearerTokenASGIApplication(ASGIApplication):
    """scim2-server's ASGI application, refusing requests without one of the bearer tokens (401)."""

    def __init__(self, storage: AsyncInMemoryStorage, provider: ScimProvider, bearer_tokens: set[str]) -> None:
        super().__init__(storage, provider)
        self.bearer_tokens = bearer_tokens

    def check_auth(self, request: ScimRequest) -> None:
        BearerTokenApplication.check_auth(self, request)  # type: ignore[arg-type]


def build_application(token: str) -> BearerTokenASGIApplication:
    """The application ``scim2-server --bearer-token TOKEN`` would serve, as ASGI and in memory."""
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(load_default_schemas().values(), load_default_resource_types().values(), config=config)
    return BearerTokenASGIApplication(AsyncInMemoryStorage(), provider, {token})


@dataclass(frozen=True)
class ScimServer:
    """A running scim2-server: its base URL, bearer token and in-memory storage."""

    url: str
    token: str
    storage: AsyncInMemoryStorage

    def __str__(self) -> str:
        return self.url

    def resources(self, resource_type: str) -> list[Any]:
        """The stored resources of one type (``"User"`` or ``"Group"``)."""
        return [r for r in self.storage.resources if r.meta is not None and r.meta.resource_type == resource_type]


@asynccontextmanager
async def scim_server(token: str | None = None) -> AsyncIterator[ScimServer]:
    """Run scim2-server on loopback; yield where it answers (``…/v2``) and the token it accepts."""
    token = token or secrets.token_urlsafe(16)
    app = build_application(token)
    async with serve_asgi(app) as root:
        yield ScimServer(url=root + "/v2", token=token, storage=app.storage)  # type: ignore[arg-type]
