"""At ``log_level = "debug"`` no line carries the Graph bearer token (aiohttp's client, azure-identity,
and hpack/h2 under httpx can write headers at debug; those libraries stay at WARNING whatever the level)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from graphsim import GraphSimulator
from reactor import log
from reactor.config import GraphSettings
from reactor.graph.client import GraphClient


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log.configure("debug", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


async def test_a_graph_call_at_debug_writes_no_token(
    sim: GraphSimulator, graph_settings: GraphSettings, debug_log: io.StringIO
) -> None:
    token = graph_settings.token.reveal()
    uid = sim.add_user(user_principal_name="zoe.gul@corp.contoso.local", display_name="Zoë Gül")
    graph = GraphClient(graph_settings)
    try:
        data = await graph.get_json(f"/users/{uid}", operation="get_user")
    finally:
        await graph.aclose()
    assert data["id"] == uid
    for name in ("aiohttp.client", "azure", "hpack", "h2", "httpcore", "httpx"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    logging.getLogger("hpack.hpack").debug("Authorization: Bearer %s", token)  # what hpack would write
    out = debug_log.getvalue()
    assert token not in out
    assert "Bearer" not in out
