"""Retries, declared in one place (built on tenacity).

* What is retried: :class:`~reactor.errors.TransientError` and its :class:`~reactor.errors.ThrottledError`,
  nothing else — a permanent error, a conflict or a bug fails at once.
* How often: at most :attr:`RetryPolicy.attempts` attempts AND within :attr:`RetryPolicy.horizon`
  seconds of the first (no retry is started whose wait would cross the horizon; a ``Retry-After``
  beyond it gives up at once).
* How long between: exponential backoff ``initial * 2**(n-1)`` capped at ``maximum``, plus a random
  jitter of up to ``jitter`` seconds; a ``Retry-After`` (``ThrottledError.retry_after``) replaces it.
* Observable through hooks (:data:`HOOKS`, shaped like stamina's instrumentation): every failed
  attempt is an :class:`Attempt` (number, error, status, time, wait) passed to each hook; the
  default hooks count ``reactor_retries_total{target}`` and log a ``retrying`` warning event for
  each retry. Tests add their own with :func:`hooked`. (The history of a unit's attempts, kept in
  dead letters, is the dispatcher's: it spans retried calls and restarts.)
* Testable: ``retry.TESTING = True`` (or ``with retry.testing():``) removes the sleeps; waits are
  still computed, recorded and counted against the horizon.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from reactor import log
from reactor.backoff import Backoff
from reactor.errors import ThrottledError, TransientError
from reactor.metrics import RETRIES

T = TypeVar("T")

TESTING = False
"""When true, retries do not sleep (tests flip it, or use :func:`testing`)."""

RETRY_ON: tuple[type[BaseException], ...] = (TransientError,)
"""The only errors that are retried."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts, wall-clock horizon (seconds), backoff and jitter (seconds)."""

    attempts: int = 6
    horizon: float = 120.0
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jitter included."""
        base = Backoff(self.initial, self.maximum).ceiling(attempt)
        return base + random.uniform(0.0, self.jitter)


DEFAULT_POLICY = RetryPolicy()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Attempt:
    """One failed attempt: its number, target, the error (type and message), HTTP status, when it
    failed (epoch seconds) and the wait before the next attempt (``None`` when none followed)."""

    number: int
    target: str
    error: str
    status: int | None
    at: float
    wait: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "target": self.target,
            "error": self.error,
            "status": self.status,
            "at": self.at,
            "wait": self.wait,
        }


AttemptHook = Callable[[Attempt], None]
"""Called with every failed attempt of :func:`call`: ``wait`` is the pause before the next attempt,
``None`` when none follows (the error is raised)."""


def _count(attempt: Attempt) -> None:
    if attempt.wait is not None:
        RETRIES.labels(attempt.target).inc()


def _log(attempt: Attempt) -> None:
    if attempt.wait is not None:
        log.event(
            "retrying", level="warning", target=attempt.target, attempt=attempt.number, error=attempt.error,
            status=attempt.status, wait_seconds=round(attempt.wait, 3),
        )


HOOKS: list[AttemptHook] = [_count, _log]
"""The hooks every failed attempt goes through: the retries counter and the ``retrying`` event."""


@contextmanager
def testing(enabled: bool = True) -> Iterator[None]:
    """Within the block, retries do not sleep."""
    global TESTING
    before = TESTING
    TESTING = enabled
    try:
        yield
    finally:
        TESTING = before


@contextmanager
def hooked(hook: AttemptHook) -> Iterator[None]:
    """Within the block, ``hook`` sees every failed attempt too (for tests and tools)."""
    HOOKS.append(hook)
    try:
        yield
    finally:
        HOOKS.remove(hook)


def _emit(attempt: Attempt) -> None:
    for hook in tuple(HOOKS):
        hook(attempt)


def failed_attempt(number: int, target: str, exc: BaseException, wait: float | None) -> None:
    """Report a failed attempt made outside :func:`call` (a request of a Graph ``$batch`` asked again):
    the same counter, ``retrying`` event and hooks."""
    _emit(_failed(number, target, exc, wait))


def _failed(number: int, target: str, exc: BaseException, wait: float | None = None) -> Attempt:
    """Attempt ``number`` failed with ``exc`` just now."""
    return Attempt(number, target, _describe(exc), getattr(exc, "status", None), time.time(), wait)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def call(fn: Callable[[], Awaitable[T]], *, target: str, policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Await ``fn()`` until it succeeds, retrying transient errors per ``policy``.

    The last error is re-raised as is (a ``TransientError`` when retries ran out, otherwise the
    non-retryable error). Every failed attempt goes through :data:`HOOKS`.

    The first attempt runs on its own: most calls succeed at once, and tenacity's machinery (a
    retrying object, its state and its action chain, about as much CPU as the rest of a SCIM write
    on the event loop) is built only when the first attempt failed with an error worth retrying. That
    attempt's error is then handed to tenacity as its own first outcome, so the waits, the horizon
    and the hooks are the same as if tenacity had made it.
    """
    started = time.monotonic()
    skipped = 0.0
    number = 1
    pending: list[Attempt] = []  # the failed attempt whose fate (retried or raised) is not known yet
    try:
        return await fn()
    except Exception as exc:
        if not isinstance(exc, RETRY_ON):
            _emit(_failed(1, target, exc))
            raise
        pending.append(_failed(1, target, exc))
        first: BaseException | None = exc

    async def sleep(seconds: float) -> None:
        nonlocal skipped
        if TESTING:
            skipped += seconds  # the horizon still sees the wait that was skipped
            await asyncio.sleep(0)
            return
        await asyncio.sleep(seconds)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        elapsed = time.monotonic() - started + skipped
        return elapsed + state.upcoming_sleep >= policy.horizon

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        return policy.backoff(state.attempt_number)

    def before_sleep(state: RetryCallState) -> None:
        last = pending.pop()
        _emit(Attempt(last.number, last.target, last.error, last.status, last.at, state.upcoming_sleep))

    async def attempt() -> T:
        nonlocal number, first
        if first is not None:  # the first attempt, made above: its error is tenacity's first outcome
            error, first = first, None
            raise error
        number += 1
        try:
            return await fn()
        except Exception as exc:
            pending.append(_failed(number, target, exc))
            raise

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RETRY_ON),
        stop=stop,
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return await retrying(attempt)
    finally:
        if pending:  # the failed attempt that ended the loop: no retry follows
            _emit(pending.pop())
