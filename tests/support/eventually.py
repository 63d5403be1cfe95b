"""The one way tests wait for work: poll a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Check = Callable[[], Awaitable[bool]] | Callable[[], bool]


async def eventually(
    check: Check,
    what: str = "the expected state",
    timeout: float = 15.0,
    interval: float = 0.02,
    *,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``check`` (plain or async) until it holds; fail naming ``what`` after ``timeout`` seconds.

    ``detail`` is called only on failure; what it returns (a log tail, a progress line) follows the
    message, so that a failure shows the state it ended in."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            message = f"not within {timeout} s: {what}"
            raise AssertionError(f"{message}\n{detail()}" if detail is not None else message)
        await asyncio.sleep(interval)
