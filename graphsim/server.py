"""Serving a simulator: uvicorn in the current event loop, on a socket bound before it starts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp

from graphsim.app import build_app
from graphsim.simulator import GraphSimulator

STARTUP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """uvicorn without signal handlers (the embedding program owns SIGINT and SIGTERM) that stops
    as soon as :meth:`request_exit` is called instead of at its next 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 0.1)
            should_exit = await self.on_tick(counter)


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP,
    # and without it every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve any ASGI ``app`` with uvicorn in the current event loop; yields ``http://host:port``.

    The socket is bound before uvicorn starts (port 0 picks a free one). On exit the server stops
    accepting and finishes open requests (at most 2 s).
    """
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=bound_port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{bound_port}")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            await asyncio.sleep(0.005)
        yield f"http://{_url_host(host)}:{bound_port}"
    finally:
        server.request_exit()
        try:
            await task
        finally:
            sock.close()


@contextlib.asynccontextmanager
async def running_simulator(sim: GraphSimulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``sim`` over HTTP and run its notification sender; yields the base URL (``http://host:port/v1.0``).

    On exit the server stops, then the sender stops and closes its HTTP session. Notifications not
    yet sent stay queued in ``sim`` (a later ``running_simulator`` sends them).
    """
    await sim.start()
    try:
        async with serving(build_app(sim), host, port) as root:
            yield root + "/v1.0"
    finally:
        await sim.stop()
