"""Graph-shaped responses: JSON bodies and the ``{"error": {"code", "message"}}`` error body."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response


class GraphHTTPError(Exception):
    """Raised inside a route to answer with a Graph error body."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response with Graph's ``request-id`` header."""
    all_headers = {"request-id": str(uuid.uuid4())}
    all_headers.update(headers or {})
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=all_headers)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A response carrying Graph's error body."""
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": str(uuid.uuid4())}}}
    return json_response(body, status, headers)


async def handle_graph_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`GraphHTTPError`."""
    assert isinstance(exc, GraphHTTPError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_not_found(request: Request, exc: Exception) -> Response:
    """Starlette handler for unknown paths."""
    return error_response(404, "UnknownError", f"Resource not found for the segment '{request.url.path}'.")


async def handle_method_not_allowed(request: Request, exc: Exception) -> Response:
    """Starlette handler for a known path with the wrong method."""
    return error_response(405, "Request_BadRequest", f"{request.method} is not supported on {request.url.path}.")
