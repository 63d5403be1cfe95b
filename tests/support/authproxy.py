"""A reverse proxy on loopback that adds ``Authorization: Bearer <token>`` to every GET it forwards:
how a browser that cannot be given headers on its command line (headless Chromium) reaches the
admin listener's token-protected status page, as a person's browser does behind an authenticating
gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve_asgi

_DROP = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection"})


@contextlib.asynccontextmanager
async def bearer_proxy(upstream: str, token: str) -> AsyncIterator[str]:
    """Serve a proxy to ``upstream``; yields its base URL."""
    async with httpx.AsyncClient(base_url=upstream, timeout=10) as client:

        async def forward(request: Request) -> Response:
            answer = await client.get(
                request.url.path, params=request.url.query or None, headers={"Authorization": f"Bearer {token}"}
            )
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
            return Response(answer.content, status_code=answer.status_code, headers=headers)

        app = Starlette(routes=[Route("/{path:path}", forward, methods=["GET"])])
        async with serve_asgi(app) as url:
            yield url
