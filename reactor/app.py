"""The ASGI application of ``reactor serve``: two listeners and a lifespan that owns every background task.

- The **public** listener (``server.host``/``server.port``, the one Graph reaches) serves only
  ``POST /notifications``, ``POST /lifecycle`` and ``GET /healthz``; anything else is 404 (405 for
  another method on a webhook path).
- The **admin** listener (``server.admin_host``/``server.admin_port``, loopback by default) serves
  the status page ``/``, ``/status.json``, ``/explain?user=…`` and ``/explain.json?user=…`` (the
  report of ``reactor explain``, as a page and as its ``--json`` document), ``/metrics``, ``/readyz``
  and ``/healthz``. When ``server.admin_token`` is set, the status page, ``/status.json`` and the
  explain view (employees' UPNs, access changes, errors) require ``Authorization: Bearer <token>``;
  probes and metrics stay open so that kubelets and scrapers need no secret. ``check-config``
  refuses a non-loopback admin listener without a token.

One uvicorn server serves both sockets; :class:`ReactorApp` sends each request to the app of the
listener it arrived on (by local port, which is why the two ports must differ).
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from collections.abc import Iterable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from reactor import log
from reactor.errors import ReactorError
from reactor.explainpage import render_explain_problem, render_explanation
from reactor.intake import Intake
from reactor.service import Service
from reactor.statuspage import CSS

STYLE_HASH = "sha256-" + b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The page is self-contained: its one inline <style> is allowed by hash, nothing else loads.
    "Content-Security-Policy": (
        f"default-src 'none'; style-src '{STYLE_HASH}'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers on every answer of the admin listener (the status page carries personal data); the one
form (the explain search) submits to the listener itself."""

MAX_QUERY = 320
"""The longest ``user`` an explain request may give (an e-mail address is at most 254 characters, a
guest's ``#EXT#`` userPrincipalName a little more)."""


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=PAGE_HEADERS)


def public_app(intake: Intake) -> ASGIApp:
    """The listener Graph reaches: the two webhooks (straight to the intake) and ``/healthz``."""

    async def method_not_allowed(request: Request) -> Response:
        return Response("use POST", status_code=405, headers={"Allow": "POST", **PAGE_HEADERS})

    routes = [
        Route("/notifications", method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/lifecycle", method_not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return WebhookFirst(intake, Starlette(routes=routes))


def admin_app(service: Service, token: str = "") -> ASGIApp:
    """The operators' listener: status page, ``/status.json``, ``/metrics``, ``/readyz``, ``/healthz``.

    With a ``token``, the status page and ``/status.json`` answer 401 without
    ``Authorization: Bearer <token>`` (compared in constant time)."""
    expected = f"Bearer {token}".encode() if token else b""

    def denied(request: Request) -> Response | None:
        if not expected:
            return None
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        if hmac.compare_digest(given, expected):
            return None
        return Response(
            "admin token required (Authorization: Bearer …)", status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="reactor-admin"', **PAGE_HEADERS},
        )

    async def readyz(request: Request) -> Response:
        ready, checks = await service.readiness()
        state = "not ready" if not ready else "degraded" if not all(c["ok"] for c in checks.values()) else "ready"
        return JSONResponse({"status": state, "checks": checks}, status_code=200 if ready else 503, headers=PAGE_HEADERS)

    async def metrics(request: Request) -> Response:
        body, content_type = await service.metrics_text()
        return Response(body, media_type=content_type, headers=PAGE_HEADERS)

    async def status_page(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        return Response(await service.status_html(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def status_json(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        return JSONResponse(await service.status(), headers=PAGE_HEADERS)

    async def explained(request: Request, *, as_json: bool) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        query = request.query_params.get("user", "").strip()

        def problem(status: int, message: str) -> Response:
            if as_json:
                return JSONResponse({"error": message, "query": query[:MAX_QUERY]}, status_code=status, headers=PAGE_HEADERS)
            page = render_explain_problem(message, query[:MAX_QUERY])
            return Response(page, status_code=status, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

        if not query:
            return problem(400, "give a person: ?user=UPN, object id or e-mail")
        if len(query) > MAX_QUERY or any(ord(c) < 32 for c in query):
            return problem(400, f"the user to explain must be one line of at most {MAX_QUERY} characters")
        if service.explain is None:
            return problem(404, "explain is not available in this service")
        try:
            report = await service.explain(query)
        except ReactorError as exc:
            log.event("explain_failed", level="warning", error=f"{type(exc).__name__}: {exc}")
            return problem(503, f"could not read the person's state: {type(exc).__name__}: {exc}")
        if report is None:
            return problem(404, f"no such user: no Entra user with object id, userPrincipalName or mail {query!r}")
        if as_json:
            return JSONResponse(report, headers=PAGE_HEADERS)
        return Response(render_explanation(report), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def explain_page(request: Request) -> Response:
        return await explained(request, as_json=False)

    async def explain_json(request: Request) -> Response:
        return await explained(request, as_json=True)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/explain", explain_page, methods=["GET"]),
        Route("/explain.json", explain_json, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
        Route("/", status_page, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def create_app(service: Service) -> ReactorApp:
    """Both listeners' apps around a :class:`~reactor.service.Service` (started by the lifespan).

    Served on one socket (tests, ``serve_asgi``), every request goes to the public app; the server
    marks the admin socket's port with :meth:`ReactorApp.listen_admin_on`."""
    return ReactorApp(service, public_app(service.intake), admin_app(service, service.settings.server.admin_token.reveal()))


class ReactorApp:
    """Routes each request to the app of the listener it arrived on; runs the service in the lifespan."""

    def __init__(self, service: Service, public: ASGIApp, admin: ASGIApp) -> None:
        self.service = service
        self.public = public
        self.admin = admin
        self.admin_ports: frozenset[int] = frozenset()

    def listen_admin_on(self, ports: Iterable[int]) -> None:
        """Requests that arrive on these local ports go to the admin app."""
        self.admin_ports = frozenset(ports)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        server = scope.get("server")
        if self.admin_ports and server is not None and server[1] in self.admin_ports:
            await self.admin(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WEBHOOK_PATHS:
            # The hot path: straight to the intake, one coroutine frame less than through the public app.
            await self.service.intake(scope, receive, send)
        else:
            await self.public(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.service.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.service.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


class WebhookFirst:
    """Sends ``POST /notifications`` and ``POST /lifecycle`` straight to the intake; everything else
    to the Starlette app. The intake is the hot path; the rest is not."""

    def __init__(self, intake: Intake, app: ASGIApp) -> None:
        self.intake = intake
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WEBHOOK_PATHS:
            await self.intake(scope, receive, send)
        else:
            await self.app(scope, receive, send)


WEBHOOK_PATHS = frozenset({"/notifications", "/lifecycle", "/notifications/", "/lifecycle/"})
