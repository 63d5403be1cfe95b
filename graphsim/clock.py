"""A wall clock that can be moved forward, for a simulator run as a process."""

from __future__ import annotations

import time


class OffsetClock:
    """``time.time()`` plus an offset that :meth:`advance` increases (never decreases)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` into the future."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
