"""``reactor sync``'s plain progress lines (stderr not a terminal): a log file stays readable."""

from __future__ import annotations

import io

from reactor.progressview import PlainLines, progress_view
from reactor.sync.progress import APPLYING, PLANNING, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_say_how_each_phase_ended_and_at_most_one_more_every_two_seconds() -> None:
    clock, stream = Clock(), io.StringIO()
    p = Progress(PlainLines(stream, clock=clock), clock=clock, wall=clock)
    p.begin("reactor sync")
    p.advance(total=1)
    p.enter(PLANNING, total=2000)
    for _ in range(2000):
        clock.now += 1 / 64  # 64 users a second: 31.25 s
        p.advance()
    p.enter(APPLYING, total=3)
    for _ in range(3):
        p.advance()
    p.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "sync: reading groups 1/1 groups"
    planning = [line for line in lines if line.startswith("sync: planning")]
    assert len(planning) == 16, lines  # one every 2 s of 31.25 s, and the last
    assert planning[0] == "sync: planning 128/2000 users, 64.0/s, ETA 29 s"
    assert planning[-1] == "sync: planning 2000/2000 users, 64.0/s"
    assert lines[-2:] == ["sync: applying 3/3 users", "sync: done in 31 s"]


def test_a_failed_round_ends_with_the_time_it_ran() -> None:
    clock, stream = Clock(), io.StringIO()
    p = Progress(PlainLines(stream, clock=clock), clock=clock, wall=clock)
    p.begin("reactor sync")
    clock.now += 4
    p.finish("AskCody answered 500")
    assert stream.getvalue().splitlines() == ["sync: reading groups", "sync: failed after 4 s"]


def test_quiet_shows_nothing_and_a_pipe_gets_plain_lines() -> None:
    stream = io.StringIO()
    with progress_view(stream, quiet=True) as quiet:
        quiet.begin("reactor sync")
        quiet.finish()
    assert stream.getvalue() == "" and quiet.listener is None
    with progress_view(stream) as plain:
        assert isinstance(plain.listener, PlainLines)
