"""Retries, declared in one place (built on tenacity).

* What is retried: :class:`~reactor.errors.TransientError` and its :class:`~reactor.errors.ThrottledError`,
  nothing else — a permanent error, a conflict or a bug fails at once.
* How often: at most :attr:`RetryPolicy.attempts` attempts AND within :attr:`RetryPolicy.horizon`
  seconds of the first (no retry is started whose wait would cross the horizon; a ``Retry-After``
  beyond it gives up at once).
* How long between: exponential backoff ``initial * 2**(n-1)`` capped at ``maximum``, plus a random
  jitter of up to ``jitter`` seconds; a ``Retry-After`` (``ThrottledError.retry_after``) replaces it.
* Observable: every retry counts ``reactor_retries_total{target}`` and logs a warning; every failed
  attempt is kept as an :class:`Attempt` (number, error, status, time, wait), readable from the final
  exception with :func:`attempts_of` and collected across calls with :func:`recording`, so that a
  dead letter can store the history.
* Testable: ``retry.TESTING = True`` (or ``with retry.testing():``) removes the sleeps; waits are
  still computed, recorded and counted against the horizon.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from reactor.config import SyncSettings
from reactor.errors import ThrottledError, TransientError
from reactor.metrics import RETRIES

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

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

    @classmethod
    def from_settings(cls, sync: SyncSettings) -> RetryPolicy:
        """The policy of ``[sync] max_attempts`` and ``retry_horizon_seconds``."""
        return cls(attempts=sync.max_attempts, horizon=sync.retry_horizon_seconds)

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jitter included."""
        base: float = min(self.maximum, self.initial * 2.0 ** (attempt - 1))
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


_recorder: ContextVar[list[Attempt] | None] = ContextVar("reactor_retry_recorder", default=None)


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
def recording() -> Iterator[list[Attempt]]:
    """Collect every failed attempt of the retried calls made in this block (this task)."""
    history: list[Attempt] = []
    token = _recorder.set(history)
    try:
        yield history
    finally:
        _recorder.reset(token)


def attempts_of(exc: BaseException) -> tuple[Attempt, ...]:
    """The failed attempts behind an error raised by :func:`call` (empty for any other error)."""
    attempts: tuple[Attempt, ...] = getattr(exc, "retry_attempts", ())
    return attempts


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def call(fn: Callable[[], Awaitable[T]], *, target: str, policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Await ``fn()`` until it succeeds, retrying transient errors per ``policy``.

    The last error is re-raised as is (a ``TransientError`` when retries ran out, otherwise the
    non-retryable error), carrying the attempt history for :func:`attempts_of`.
    """
    history: list[Attempt] = []
    started = time.monotonic()
    skipped = 0.0

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
        RETRIES.labels(target).inc()
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.upcoming_sleep
        if history:
            last = history[-1]
            waited = Attempt(last.number, last.target, last.error, last.status, last.at, delay)
            history[-1] = waited
            recorder = _recorder.get()
            if recorder is not None:
                for i in range(len(recorder) - 1, -1, -1):
                    if recorder[i] is last:
                        recorder[i] = waited
                        break
        log.warning("%s: attempt %d failed (%s), retrying in %.2fs", target, state.attempt_number, exc, delay)

    async def attempt() -> T:
        number = len(history) + 1
        try:
            return await fn()
        except Exception as exc:
            entry = Attempt(number, target, _describe(exc), getattr(exc, "status", None), time.time(), None)
            history.append(entry)
            recorder = _recorder.get()
            if recorder is not None:
                recorder.append(entry)
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
    except Exception as exc:
        exc.retry_attempts = tuple(history)  # type: ignore[attr-defined]
        raise


def retried(
    target: str, policy: RetryPolicy = DEFAULT_POLICY
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate an async function so that every call goes through :func:`call`."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call(lambda: fn(*args, **kwargs), target=target, policy=policy)

        return wrapper

    return decorate
