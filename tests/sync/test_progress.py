"""Progress of a round, driven by hand on a clock the test turns: counts, rate, time left, the
summary people read, and a reconcile's users counted as the workers apply them."""

from __future__ import annotations

import pytest

from reactor.sync.progress import APPLYING, IDLE, LISTING, PLANNING, READING_CHANGES, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_phase_tells_its_count_rate_and_time_left(clock: Clock) -> None:
    seen: list[tuple[str, int, bool]] = []
    p = Progress(lambda p: seen.append((p.phase, p.done, p.phase_changed)), clock=clock, wall=clock)
    assert p.summary() == "idle" and not p.running
    p.begin("reactor sync")
    assert p.summary() == "reading groups"
    clock.now += 1
    p.advance(total=2)
    assert p.summary() == "reading groups 1/2 groups, 1.0/s, ETA 1 s"
    p.enter(PLANNING, total=2000)
    clock.now += 10
    p.advance(400)
    assert (p.rate(), p.eta()) == (40.0, 40.0)
    assert p.summary() == "planning 400/2000 users, 40.0/s, ETA 40 s"
    clock.now += 40
    p.advance(1600)
    assert p.summary() == "planning 2000/2000 users, 40.0/s"  # nothing left: no ETA
    p.finish()
    assert p.summary() == "reactor sync finished in 51 s" and p.finished_at == clock.now
    assert seen == [
        ("reading groups", 0, True), ("reading groups", 1, False), ("planning", 0, True), ("planning", 400, False),
        ("planning", 2000, False), (IDLE, 2000, True),
    ]


def test_a_phase_without_a_total_counts_what_it_did(clock: Clock) -> None:
    p = Progress(clock=clock, wall=clock)
    p.begin("reactor sync")
    p.enter(LISTING)
    clock.now += 2
    p.advance(100)
    assert p.summary() == "listing AskCody users 100 users, 50.0/s"
    assert p.as_dict()["eta_seconds"] is None and p.as_dict()["total"] is None


def test_a_round_that_raises_finishes_with_the_error(clock: Clock) -> None:
    p = Progress(clock=clock, wall=clock)
    with pytest.raises(RuntimeError), p.run("periodic reconcile", phase=READING_CHANGES, unit=""):
        clock.now += 3
        raise RuntimeError("Graph answered 503")
    assert not p.running
    assert p.as_dict()["error"] == "Graph answered 503"
    assert p.summary() == "periodic reconcile failed: Graph answered 503 in 3 s"


def test_a_reconcile_finishes_when_the_workers_applied_every_user_it_queued(clock: Clock) -> None:
    p = Progress(clock=clock, wall=clock)
    with p.run("start-up reconcile", phase=READING_CHANGES, unit=""):
        p.expect(["a", "b"])
        p.settle("a")  # a worker is faster than the rest of the reconcile
        p.settle("z")  # not one of the round's: not counted
        p.expect(["b", "c"])  # drift found later: only c is new
        assert (p.phase, p.done, p.total) == (APPLYING, 1, 3)
    assert p.running  # sealed, but b and c are still being applied
    clock.now += 2
    p.settle("b")
    assert p.summary() == "applying 2/3 users, 1.0/s, ETA 1 s"
    p.settle("c")
    assert not p.running and p.as_dict()["done"] == 3 and p.as_dict()["total"] == 3


def test_a_reconcile_that_queued_nobody_finishes_at_once(clock: Clock) -> None:
    p = Progress(clock=clock, wall=clock)
    with p.run("periodic reconcile", phase=READING_CHANGES, unit=""):
        p.expect([])
    assert not p.running and p.finished_at is not None


def test_users_applied_elsewhere_end_the_applying_phase_only_once_the_round_is_sealed(clock: Clock) -> None:
    p = Progress(clock=clock, wall=clock)
    with p.run("start-up reconcile", phase=READING_CHANGES, unit=""):
        p.expect(["a", "b"])
        p.settled_elsewhere()
        assert p.running  # the reconcile itself still runs
    p.settle("a")
    p.settled_elsewhere()
    assert not p.running and (p.done, p.total) == (1, 2)
