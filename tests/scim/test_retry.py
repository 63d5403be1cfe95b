"""reactor.retry: what is retried, how often, how long, what is kept."""

from __future__ import annotations

import logging

import pytest

from reactor import retry
from reactor.errors import ConflictError, PermanentError, ThrottledError, TransientError
from reactor.metrics import REGISTRY, RETRIES
from tests.support.retries import recording


class Flaky:
    """Fails with the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def count(target: str) -> float:
    return REGISTRY.get_sample_value("reactor_retries_total", {"target": target}) or 0.0


async def test_transient_errors_are_retried_and_counted() -> None:
    fn = Flaky(TransientError("boom", status=502), ThrottledError("slow", retry_after=3))
    before = count("unit")
    assert await retry.call(fn, target="unit") == "ok"
    assert fn.calls == 3 and count("unit") - before == 2


@pytest.mark.parametrize("error", [PermanentError("no", status=400), ConflictError("exists"), ValueError("bug")])
async def test_other_errors_are_not_retried(error: Exception) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)):
        await retry.call(fn, target="unit")
    assert fn.calls == 1


@pytest.mark.parametrize(
    ("errors", "attempts", "calls", "seen"),
    [
        ([], 3, 1, []),  # the first attempt succeeds: nothing to report
        ([PermanentError("no", status=400)], 3, 1, [(1, None)]),  # not worth retrying: reported, not retried
        ([TransientError("down", status=503)], 1, 1, [(1, None)]),  # worth retrying, but no attempt left
        ([TransientError("down", status=503)], 2, 2, [(1, 0.0)]),  # retried after the first, then succeeds
        ([TransientError("down", status=503)] * 2, 2, 2, [(1, 0.0), (2, None)]),
    ],
)
async def test_the_first_attempt_is_reported_like_every_other(
    errors: list[Exception], attempts: int, calls: int, seen: list[tuple[int, float | None]]
) -> None:
    fn = Flaky(*errors)
    policy = retry.RetryPolicy(attempts=attempts, horizon=100, initial=0, maximum=0, jitter=0)
    with recording() as history:
        try:
            assert await retry.call(fn, target="unit", policy=policy) == "ok"
        except (PermanentError, TransientError) as exc:
            assert exc is errors[-1], "the last error is raised as is"
    assert [(a.number, a.wait) for a in history] == seen
    assert fn.calls == calls


async def test_attempts_are_limited_and_kept() -> None:
    fn = Flaky(*(TransientError(f"fail {n}", status=503) for n in range(10)))
    with recording() as attempts, pytest.raises(TransientError, match="fail 2"):
        await retry.call(fn, target="unit", policy=retry.RetryPolicy(attempts=3, horizon=100))
    assert [(a.number, a.error, a.status, a.target) for a in attempts] == [
        (1, "TransientError: fail 0", 503, "unit"),
        (2, "TransientError: fail 1", 503, "unit"),
        (3, "TransientError: fail 2", 503, "unit"),
    ]
    assert attempts[0].at <= attempts[2].at
    assert attempts[0].as_dict()["number"] == 1


async def test_the_horizon_stops_retries_whose_wait_would_cross_it() -> None:
    policy = retry.RetryPolicy(attempts=100, horizon=5, initial=1, maximum=100, jitter=0)
    fn = Flaky(*(TransientError("x") for _ in range(100)))
    with recording() as history, pytest.raises(TransientError):
        await retry.call(fn, target="unit", policy=policy)
    # waits 1, 2 then 4 would cross 5 s from the start (sleeps are skipped, the waits still count)
    assert [a.wait for a in history] == [1, 2, None]


async def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = retry.RetryPolicy(initial=0.5, maximum=4, jitter=0.25)
    waits = [policy.backoff(n) for n in range(1, 8)]
    for n, (wait, base) in enumerate(zip(waits, [0.5, 1, 2, 4, 4, 4, 4], strict=True), start=1):
        assert base <= wait <= base + 0.25, (n, wait)


async def test_retry_after_replaces_the_backoff() -> None:
    fn = Flaky(ThrottledError("429", retry_after=42), ThrottledError("429", retry_after=None))
    with recording() as history:
        await retry.call(fn, target="unit", policy=retry.RetryPolicy(horizon=1000, initial=1, jitter=0))
    assert [a.wait for a in history] == [42, 2]  # Retry-After, then the backoff of attempt 2


async def test_hooks_see_every_call() -> None:
    with recording() as history:
        await retry.call(Flaky(TransientError("a")), target="one")
        await retry.call(Flaky(TransientError("b"), TransientError("c")), target="two")
    assert [(a.target, a.number) for a in history] == [("one", 1), ("two", 1), ("two", 2)]


async def test_the_testing_switch_removes_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    policy = retry.RetryPolicy(initial=1, jitter=0)
    with retry.testing(False):
        await retry.call(Flaky(TransientError("x")), target="unit", policy=policy)
    assert slept == [1]
    slept.clear()
    with retry.testing():
        await retry.call(Flaky(TransientError("x")), target="unit", policy=policy)
    assert slept == [0]  # only a yield to the loop


async def test_retries_are_counted_and_logged_as_events(caplog: pytest.LogCaptureFixture) -> None:
    before = RETRIES.labels("unit")._value.get()
    caplog.set_level(logging.WARNING, logger="reactor")
    await retry.call(Flaky(ThrottledError("429", retry_after=3, status=429)), target="unit")
    assert RETRIES.labels("unit")._value.get() == before + 1
    (event,) = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "retrying"]
    assert (event["target"], event["attempt"], event["status"], event["wait_seconds"]) == ("unit", 1, 429, 3.0)
