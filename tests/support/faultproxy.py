"""A reverse proxy on loopback that injects failures in front of a real server.

    async with fault_proxy(server.url) as proxy:
        proxy.unavailable(times=3)                       # the next 3 requests: 503
        proxy.throttle(times=2, retry_after=1)           # then 2x 429 with Retry-After: 1
        proxy.reject(when=lambda r: r.method == "PATCH")  # the next PATCH: 400 invalidValue
        client = AskCodyClient(settings_for(proxy.url))
        ...
        assert proxy.count("POST", "/Users") == 1

Faults are consumed in the order they were added, each by the requests its predicate matches.
Every request is counted by (method, path) — the path relative to the upstream base URL — whether
it was faulted or forwarded.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.support.servers import read_body, serve_asgi

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


@dataclass(frozen=True)
class ProxiedRequest:
    """What a fault predicate sees: method, path relative to the upstream base, query string, body,
    and the request's headers (names in lower case)."""

    method: str
    path: str
    query: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        """The value of a request header, None when it was not sent."""
        return self.headers.get(name.lower())


Predicate = Callable[[ProxiedRequest], bool]


@dataclass
class Fault:
    """Answer ``status`` (with ``headers`` and a SCIM error ``body``) to the next ``times`` matching
    requests; with ``forward`` the request still reaches the upstream first (the answer is lost)."""

    status: int
    times: int
    when: Predicate
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    forward: bool = False
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.hits >= self.times


def _always(_: ProxiedRequest) -> bool:
    return True


class FaultProxy:
    """An ASGI app forwarding to ``upstream`` (a base URL such as ``http://127.0.0.1:P/v2``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self.faults: list[Fault] = []
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faulted: Counter[tuple[str, str]] = Counter()
        self.log: list[ProxiedRequest] = []
        self._session: aiohttp.ClientSession | None = None
        self._prefix = urlsplit(self.upstream).path

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        when: Predicate = _always,
        headers: dict[str, str] | None = None,
        scim_type: str | None = None,
        detail: str = "injected by the fault proxy",
        forward: bool = False,
    ) -> Fault:
        """Answer ``status`` to the next ``times`` requests matching ``when`` (forwarded first with ``forward``)."""
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": str(status),
            "detail": detail,
        }
        if scim_type:
            body["scimType"] = scim_type
        fault = Fault(status, times, when, dict(headers or {}), body, forward)
        self.faults.append(fault)
        return fault

    def unavailable(self, times: int = 1, *, when: Predicate = _always, retry_after: float | None = None) -> Fault:
        """``times`` x 503 (with ``Retry-After`` when given)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return self.fail(503, times, when=when, headers=headers)

    def throttle(self, times: int = 1, *, retry_after: float = 1, when: Predicate = _always) -> Fault:
        """``times`` x 429 with ``Retry-After``."""
        return self.fail(429, times, when=when, headers={"Retry-After": f"{retry_after:g}"})

    def reject(self, times: int = 1, *, when: Predicate = _always, scim_type: str = "invalidValue") -> Fault:
        """``times`` x 400 with a SCIM error."""
        return self.fail(400, times, when=when, scim_type=scim_type)

    def lose_answer(self, times: int = 1, *, when: Predicate = _always) -> Fault:
        """``times`` x forward the request, then answer 504 instead of the upstream's answer."""
        return self.fail(504, times, when=when, forward=True)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests seen (faulted or not) with this method and/or path (a path ending in ``*`` is a prefix)."""
        total = 0
        for (m, p), n in self.requests.items():
            if method is not None and m != method:
                continue
            if path is not None and not (p.startswith(path[:-1]) if path.endswith("*") else p == path):
                continue
            total += n
        return total

    def _fault_for(self, request: ProxiedRequest) -> Fault | None:
        for fault in self.faults:
            if not fault.exhausted and fault.when(request):
                fault.hits += 1
                return fault
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = await read_body(receive)
        path = scope["path"].removeprefix(self._prefix) or "/"
        sent = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = ProxiedRequest(scope["method"], path, scope["query_string"].decode(), body, sent)
        self.requests[(request.method, request.path)] += 1
        self.log.append(request)
        fault = self._fault_for(request)
        if fault is None or fault.forward:
            status, headers, payload = await self._forward(request, scope["headers"])
        if fault is not None:
            self.faulted[(request.method, request.path)] += 1
            status, payload = fault.status, json.dumps(fault.body).encode()
            headers = {"content-type": "application/scim+json", **fault.headers}
        await self._respond(send, status, headers, payload)

    async def _forward(
        self, request: ProxiedRequest, raw_headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        url = self.upstream + request.path + (f"?{request.query}" if request.query else "")
        headers = {k.decode(): v.decode() for k, v in raw_headers if k.decode().lower() not in HOP_BY_HOP}
        async with self._session.request(request.method, url, data=request.body or None, headers=headers) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            return resp.status, out, payload

    @staticmethod
    async def _respond(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    """Serve a :class:`FaultProxy` to ``upstream`` on loopback; ``proxy.url`` mirrors the upstream's base path."""
    proxy = FaultProxy(upstream)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        proxy._session = session
        async with serve_asgi(proxy) as root:
            proxy.url = root + proxy._prefix
            yield proxy
