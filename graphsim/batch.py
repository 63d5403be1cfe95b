"""JSON batching as Graph does it: ``POST /v1.0/$batch`` with up to 20 requests, each dispatched to the
simulator's own routes (so authentication, throttling and injected faults apply to each request on
its own), answered with one response per request (``id``, ``status``, ``headers``, ``body``).

Graph returns the responses in any order; the simulator returns them in reverse, so a client that
relies on the order fails here as it would there. More than 20 requests, a missing or repeated
``id``, or a request without ``method``/``url``: 400 for the whole batch, as Graph answers.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import orjson

MAX_REQUESTS = 20

ASGIApp = Any


class BatchError(ValueError):
    """The batch as a whole is malformed (Graph: 400 BadRequest)."""


def check(doc: Any) -> list[dict[str, Any]]:
    """The requests of a batch document; :class:`BatchError` when Graph would refuse the batch."""
    requests = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BatchError("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(requests) > MAX_REQUESTS:
        raise BatchError(f"Number of batch request steps exceeds the maximum of {MAX_REQUESTS}.")
    ids: set[str] = set()
    for r in requests:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r.get("method") or not r.get("url"):
            raise BatchError("Each batch request needs a string 'id', a 'method' and a 'url'.")
        if r["id"] in ids:
            raise BatchError(f"Batch request id '{r['id']}' is repeated.")
        ids.add(r["id"])
    return requests


async def dispatch(app: ASGIApp, prefix: str, request: dict[str, Any], authorization: str | None) -> dict[str, Any]:
    """Run one request of a batch against ``app`` (under ``prefix``, e.g. ``/v1.0``); its response."""
    url = str(request["url"])
    path, _, query = url.partition("?")
    path = "/" + path.lstrip("/")
    headers = [(str(k).lower().encode(), str(v).encode()) for k, v in (request.get("headers") or {}).items()]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    body = orjson.dumps(request["body"]) if "body" in request else b""
    if body:
        headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": str(request["method"]).upper(),
        "scheme": "http", "path": unquote(prefix + path), "raw_path": (prefix + path).encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(b"host", b"graph.microsoft.com"), *headers],
        "server": ("graph.microsoft.com", 443), "client": ("127.0.0.1", 0),
    }
    sent = False
    status = 500
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # nothing more to read: block as a quiet client would
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            out_headers.update({k.decode(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    raw = b"".join(chunks)
    parsed: Any = None
    if raw:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw.decode(errors="replace")
    keep = {k: v for k, v in out_headers.items() if k.lower() in ("retry-after", "content-type", "location")}
    return {"id": request["id"], "status": status, "headers": keep, "body": parsed}


async def run(app: ASGIApp, prefix: str, doc: Any, authorization: str | None) -> dict[str, Any]:
    """The answer to a batch document (``{"responses": [...]}``); :class:`BatchError` when malformed."""
    requests = check(doc)
    responses = await asyncio.gather(*(dispatch(app, prefix, r, authorization) for r in requests))
    return {"responses": list(reversed(responses))}
