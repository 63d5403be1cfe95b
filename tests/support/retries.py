"""Watching the retry loop from tests: every failed attempt, through the retry hooks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reactor import retry
from reactor.retry import Attempt


@contextmanager
def recording() -> Iterator[list[Attempt]]:
    """The failed attempts of every retried call made in the block (``wait`` None: not retried)."""
    history: list[Attempt] = []
    with retry.hooked(history.append):
        yield history
