"""``python -m graphsim``: run a simulator as a process until SIGINT or SIGTERM.

The first line on stdout is the Graph base URL (``http://HOST:PORT/v1.0``); the control API is at
``http://HOST:PORT/_sim``. The clock is the wall clock, movable with ``POST /_sim/clock``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from graphsim.clock import OffsetClock
from graphsim.server import running_simulator
from graphsim.simulator import GraphSimulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphsim", description="Run the Graph simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--tenant-id", default=None, help="tenant GUID (default: a random one)")
    parser.add_argument("--token", default=None, help="bearer token Graph requests must carry (default: none)")
    parser.add_argument("--seed-file", type=Path, default=None, help="JSON seed document (users, groups)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the delivery faults")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    sim = GraphSimulator(tenant_id=args.tenant_id, token=args.token, clock=OffsetClock())
    if args.seed is not None:
        sim.faults.seed(args.seed)
    if args.seed_file is not None:
        sim.load_seed(json.loads(args.seed_file.read_text(encoding="utf-8")))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_simulator(sim, host=args.host, port=args.port) as base_url:
        print(base_url, flush=True)
        print(f"graphsim: tenant {sim.tenant_id}, control API at {base_url[: -len('/v1.0')]}/_sim", file=sys.stderr)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except (OSError, ValueError) as exc:
        print(f"graphsim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
