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

from scim2_server.memory import AsyncInMemoryStorage

from reactor.demo.askcody import build_scim_application
from tests.support.servers import serve_asgi

build_application = build_scim_application


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
async def scim_server(token: str | None = None, *, bulk: bool = True) -> AsyncIterator[ScimServer]:
    """Run scim2-server on loopback; yield where it answers (``…/v2``) and the token it accepts
    (``bulk=False``: a server whose ServiceProviderConfig does not offer bulk requests)."""
    token = token or secrets.token_urlsafe(16)
    app = build_scim_application(token, bulk=bulk)
    async with serve_asgi(app) as root:
        yield ScimServer(url=root + "/v2", token=token, storage=app.storage)  # type: ignore[arg-type]
