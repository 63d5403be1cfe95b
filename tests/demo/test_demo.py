"""``reactor demo`` as a user runs it: a child process, stopped by SIGTERM as ``docker stop``,
``kill`` or a service manager stop it, at any moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.eventually import eventually
from tests.support.servers import free_port

STOP_DEADLINE = 20.0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    out = tmp_path / "demo.out"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("REACTOR_CONFIG", None)
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "reactor", "demo", "--port", str(port)],
                                stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        yield proc, port, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _serving(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("moment", ["while it plays the steps", "while it keeps running"])
async def test_sigterm_stops_the_demo_cleanly(demo: tuple[subprocess.Popen[bytes], int, Path], tmp_path: Path,
                                              moment: str) -> None:
    proc, port, out = demo
    await eventually(lambda: _serving(port), "the demo serving its status page", timeout=60)
    if moment == "while it keeps running":
        await eventually(lambda: b"keeps running" in out.read_bytes(), "the demo done with its steps", timeout=120)
    proc.send_signal(signal.SIGTERM)
    await eventually(lambda: proc.poll() is not None, f"the demo stopped within {STOP_DEADLINE:.0f} s of SIGTERM",
                     timeout=STOP_DEADLINE)
    assert proc.returncode == 0, out.read_text()
    assert not await _serving(port)
    assert not list(tmp_path.glob("reactor-demo-*")), "the demo left its working directory behind"
