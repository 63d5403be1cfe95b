"""The ASGI application of ``reactor serve``: routes plus a lifespan that owns every background task."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reactor.intake import Intake
from reactor.service import Service


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def create_app(service: Service) -> WebhookFirst:
    """Build the Starlette app around a :class:`~reactor.service.Service` (started by the lifespan)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, checks = await service.readiness()
        state = "not ready" if not ready else "degraded" if not all(c["ok"] for c in checks.values()) else "ready"
        return JSONResponse({"status": state, "checks": checks}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        body, content_type = await service.metrics_text()
        return Response(body, media_type=content_type)

    async def status_page(request: Request) -> Response:
        return Response(await service.status_html(), media_type="text/html; charset=utf-8")

    async def status_json(request: Request) -> Response:
        return JSONResponse(await service.status())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    async def method_not_allowed(request: Request) -> Response:
        return Response("use POST", status_code=405, headers={"Allow": "POST"})

    routes = [
        Route("/notifications", method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/lifecycle", method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
        Route("/", status_page, methods=["GET"]),
    ]
    return WebhookFirst(service.intake, Starlette(routes=routes, lifespan=lifespan))


class WebhookFirst:
    """Sends ``POST /notifications`` and ``POST /lifecycle`` straight to the intake; everything else
    (and the lifespan) to the Starlette app. The intake is the hot path; the rest is not."""

    def __init__(self, intake: Intake, app: Starlette) -> None:
        self.intake = intake
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WEBHOOK_PATHS:
            await self.intake(scope, receive, send)
        else:
            await self.app(scope, receive, send)


WEBHOOK_PATHS = frozenset({"/notifications", "/lifecycle", "/notifications/", "/lifecycle/"})
