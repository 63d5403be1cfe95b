"""Handlers that are not the sync engine: recording units of work (diagnosis, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson

from reactor.domain.work import WorkUnit


class RecordingHandler:
    """Append each unit of work as one JSON line to a file instead of syncing anything.

    The lines of one event-loop iteration go to the file in one ``write``, scheduled with
    ``call_soon`` as the unit returns. The dispatcher marks a unit's journal entries done in a later
    callback (its flush task is woken after the handler returned, and only then talks to the store),
    so a line is in the file before its entries can leave the journal: a kill -9 loses no record
    of a unit whose entries are gone.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lines: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, unit: WorkUnit) -> None:
        line = orjson.dumps(
            {
                "at": time.time(),
                "kind": unit.kind,
                "object_ids": unit.object_ids,
                "seqs": [e.seq for e in unit.entries],
                "change_types": [e.change_type for e in unit.entries],
            }
        )
        if not self._lines:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()  # a system call on Python 3.11: once
            self._loop.call_soon(self._write)
        self._lines.append(line)

    def _write(self) -> None:
        lines, self._lines = self._lines, []
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # One O_APPEND write lands in the page cache at once and survives kill -9.
        os.write(self._fd, b"\n".join(lines) + b"\n")
