"""A flood of junk on the intake while valid notifications are sent: the scenario of the flood test
(``tests/test_intake_limits.py``, what is answered and logged) and of ``bench/flood.py`` (how long the
valid answers take), against a ``reactor serve`` at ``url`` that knows :data:`~tests.support.intake.SUB`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.intake import JSON, TENANT, item, oid, subscribed
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port

FLOOD = b'{"value":[' + b",".join([b"{}"] * 349_000) + b"]}"
"""1 MB of 349,000 empty items: over any item limit, refused (413) without being parsed."""
UNDER_LIMIT = b'{"value":[' + b",".join([b'{"subscriptionId":"' + b"z" * 900 + b'"}'] * 1000) + b"]}"
"""1,000 items (the default limit) with 900-character subscription ids: parsed, every item rejected, 202."""
STREAMS = 4


async def recording_reactor(tmp: Path, log_level: str) -> ReactorProcess:
    """A started ``reactor serve`` with the recording handler (units written to ``tmp/handled.jsonl``)
    on a SQLite store in ``tmp`` that knows :data:`~tests.support.intake.SUB`."""
    db = await subscribed(tmp / "reactor.db")
    port = free_port()
    config = write_config(tmp / "reactor.toml", {
        "server": {"port": port, "log_level": log_level}, "graph": {"tenant_id": TENANT},
        "store": {"url": f"sqlite:///{db}"}, "subscriptions": {"enabled": False},
    })
    return ReactorProcess(config, port, "--record", str(tmp / "handled.jsonl")).start()


@dataclass
class FloodRun:
    """What one run saw: the valid answers' seconds without junk and during it, every junk answer
    (body, status), and how many junk answers came while the timed valid requests were sent."""

    quiet: list[float] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    junk: list[tuple[bytes, int]] = field(default_factory=list)
    overlapped: int = 0


async def flood(url: str, *, valid: int = 40, quiet: int = 0, tag: str = "timed") -> FloodRun:
    """Send ``quiet`` valid notifications one after another with no junk, then ``valid`` more while
    :data:`STREAMS` connections post :data:`FLOOD` and :data:`UNDER_LIMIT` back to back (the server
    always has junk in flight while they are sent). The valid ones name ``oid(f"{tag}{n}")``."""
    run = FloodRun()
    async with httpx.AsyncClient(timeout=30) as junk_client, httpx.AsyncClient(timeout=30) as client:

        async def post_valid(name: str) -> float:
            t0 = time.perf_counter()
            answer = await client.post(f"{url}/notifications", json={"value": [item(oid(name))]})
            took = time.perf_counter() - t0
            assert answer.status_code == 202, (name, answer.status_code, answer.text)
            return took

        # Warm the valid path's connection first, so that the timing is of the answer, not of a TCP connect.
        await post_valid(f"{tag}-warm")
        for n in range(quiet):
            run.quiet.append(await post_valid(f"{tag}-quiet{n}"))
        done = asyncio.Event()

        async def flood_stream() -> None:
            while not done.is_set():
                for body in (FLOOD, UNDER_LIMIT):
                    answer = await junk_client.post(f"{url}/notifications", content=body, headers=JSON)
                    run.junk.append((body, answer.status_code))

        streams = [asyncio.create_task(flood_stream()) for _ in range(STREAMS)]
        try:
            n = 0
            while len(run.junk) < STREAMS:  # every stream is sending
                await post_valid(f"{tag}-start{n}")
                n += 1
            before = len(run.junk)
            for n in range(valid):
                run.during.append(await post_valid(f"{tag}{n}"))
            run.overlapped = len(run.junk) - before
        finally:
            done.set()
            await asyncio.gather(*streams)
    return run

