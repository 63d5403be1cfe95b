"""Handlers that are not the sync engine: recording units of work (diagnosis, tests, benchmarks)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from reactor.dispatcher import WorkUnit


class RecordingHandler:
    """Append each unit of work as one JSON line to a file instead of syncing anything."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    async def __call__(self, unit: WorkUnit) -> None:
        line = orjson.dumps(
            {
                "at": time.time(),
                "kind": unit.kind,
                "object_ids": list(unit.object_ids),
                "seqs": [e.seq for e in unit.entries],
                "change_types": [e.change_type for e in unit.entries],
            }
        )
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # One small O_APPEND write lands in the page cache at once and survives kill -9.
        os.write(self._fd, line + b"\n")
