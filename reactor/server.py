"""Running the ASGI app on uvicorn (httptools; uvloop where available), without uvicorn's access log."""

from __future__ import annotations

import gc
import importlib.util
import socket
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from reactor.app import ReactorApp
from reactor.config import Settings


def uvicorn_config(app: ASGIApp, settings: Settings, *, port: int | None = None) -> uvicorn.Config:
    """uvicorn settings for the reactor: no access log (it costs ~40% of throughput), our own JSON lines."""
    return uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port if port is None else port,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        access_log=False,
        log_level="warning",
        lifespan="on",
        # In-flight requests get 10 s (webhooks take milliseconds), then the lifespan stop a few
        # more (Service.stop): together well inside Kubernetes' default 30 s grace period.
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=False,  # nothing here reads the client address: skip the middleware per request
        log_config=None,
    )


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between collections of the youngest generation in ``reactor serve`` (Python's default: 700)."""


class ReactorServer(uvicorn.Server):
    """uvicorn's server, except that a clean stop on SIGTERM/SIGINT exits 0 instead of re-raising the signal."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built until now (modules, settings, the app) lives as long as the
        # process: move it out of the cyclic GC's reach, so that collections triggered by request
        # garbage scan only young objects instead of the whole heap (shorter pauses on the loop).
        gc.collect()
        gc.freeze()
        # And collect the young generation every 20,000 allocations instead of 700: a webhook request
        # allocates a few hundred objects, nearly all freed by reference counting, so most collections
        # found nothing to do (bench/README.md, "GC" in the stop 21 section: +3-8% of req/s).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), IPv6 when the host is."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def run(app: ReactorApp, settings: Settings) -> None:
    """Serve the public and the admin listener until SIGTERM/SIGINT; the app's lifespan drains
    in-flight work on the way out."""
    public = listen(settings.server.host, settings.server.port)
    admin = listen(settings.server.admin_host, settings.server.admin_port)
    app.listen_admin_on([admin.getsockname()[1]])
    ReactorServer(uvicorn_config(app, settings)).run(sockets=[public, admin])
