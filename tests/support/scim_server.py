"""The real scim2-server, served over HTTP on loopback for the tests.

``async with scim_server() as server:`` serves scim2-server's ASGI application (its default RFC 7643
schemas, which include the enterprise User extension, and in-memory storage) with uvicorn in the
running event loop, on ``127.0.0.1`` and a free port, refusing requests without the bearer token.
``server.url`` is the SCIM base URL (``http://127.0.0.1:<port>/v2``); ``server.storage`` lets a test
look at what the server holds without going through HTTP.

``with scim_server_process() as (url, token):`` runs the same application in a process of its own
(``python -m tests.support.scim_server PORT TOKEN``, uvicorn with httptools and uvloop), for the
benchmarks that must not count its CPU in theirs.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from scim2_server.memory import AsyncInMemoryStorage

from reactor.demo.askcody import build_scim_application
from reactor.scim.resources import PATCH_OP
from tests.support.servers import free_port, serve_asgi

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

    async def by_hand(self, scim_id: str, **values: Any) -> None:
        """Replace attributes of a user through scim2-server's own API, as an administrator would in
        AskCody (the user's version changes)."""
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": k, "value": v} for k, v in values.items()]}
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.patch(f"{self.url}/Users/{scim_id}", json=body, headers=headers)
        assert resp.status_code in (200, 204), resp.text


@asynccontextmanager
async def scim_server(token: str | None = None, *, bulk: bool = True, etag: bool = True) -> AsyncIterator[ScimServer]:
    """Run scim2-server on loopback; yield where it answers (``…/v2``) and the token it accepts
    (``bulk=False``: a server whose ServiceProviderConfig does not offer bulk requests; ``etag=False``:
    one that does not version its resources)."""
    token = token or secrets.token_urlsafe(16)
    app = build_scim_application(token, bulk=bulk, etag=etag)
    async with serve_asgi(app) as root:
        yield ScimServer(url=root + "/v2", token=token, storage=app.storage)  # type: ignore[arg-type]


@contextmanager
def scim_server_process(token: str | None = None, timeout: float = 30.0) -> Iterator[tuple[str, str]]:
    """Run scim2-server in a process of its own; yield its SCIM base URL (``…/v2``) and token."""
    token = token or secrets.token_urlsafe(16)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.scim_server", str(port), token])
    url = f"http://127.0.0.1:{port}/v2"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/ServiceProviderConfig", headers={"Authorization": f"Bearer {token}"}, timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("scim2-server did not start")
            time.sleep(0.05)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_scim_application(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), http="httptools",
                loop="uvloop", access_log=False, log_level="warning")
