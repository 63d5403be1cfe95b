"""How far a long round has come (``reactor sync``, a reconcile), for people watching it.

The engine reports into a :class:`Progress`: a round begins, goes through phases (reading groups,
listing AskCody's users, planning, applying), each counting what it has done of how many, and
finishes. Whoever shows it plugs in as a listener (``reactor sync``'s bar or plain lines on stderr)
or reads :meth:`Progress.as_dict` (the status page); nothing here knows how it is shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

READING_GROUPS = "reading groups"
READING_CHANGES = "reading changes"
LISTING = "listing AskCody users"
PLANNING = "planning"
APPLYING = "applying"
IDLE = "idle"

Listener = Callable[["Progress"], None]
"""Called after every change of a :class:`Progress` (on the event loop's thread; keep it quick)."""


class Progress:
    """The round running now (or the last one): its phase, ``done`` of ``total`` ``unit`` in that
    phase (``total`` None: not known yet), the rate and the time left, from the phase's start.

    Work handed to others (a reconcile's users, applied by the workers) is announced with
    :meth:`expect` and counted with :meth:`settle`; a round :meth:`sealed <seal>` finishes once all
    it expects is settled.
    """

    def __init__(
        self, listener: Listener | None = None, *, clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.listener = listener
        self.clock = clock
        self.wall = wall
        self.round = ""
        self.phase = IDLE
        self.unit = ""
        self.done = 0
        self.total: int | None = None
        self.started_at: float | None = None
        """Wall-clock time the round began."""
        self.finished_at: float | None = None
        """Wall-clock time the last round finished (None while one runs, or before any)."""
        self.error: str | None = None
        self.phase_changed = False
        """The last change began a phase (listeners print a line for the phase that ended)."""
        self._phase_start = clock()
        self._round_start = clock()
        self._round_end: float | None = None
        self._waiting: set[str] = set()
        self._sealed = True

    @property
    def running(self) -> bool:
        return self.phase != IDLE

    def begin(self, what: str, *, phase: str = READING_GROUPS, unit: str = "groups") -> None:
        """A round begins with ``phase`` (one that still ran is forgotten)."""
        self.round, self.error, self.finished_at = what, None, None
        self.started_at = self.wall()
        self._round_start, self._round_end = self.clock(), None
        self._waiting, self._sealed = set(), False
        self.enter(phase, unit=unit)

    @contextmanager
    def run(self, what: str, *, phase: str = READING_GROUPS, unit: str = "groups") -> Iterator[Progress]:
        """A round from :meth:`begin` to its end: :meth:`seal` when the block ends (finished, unless
        it expects users still to be applied), :meth:`finish` with the error when it raises."""
        self.begin(what, phase=phase, unit=unit)
        try:
            yield self
        except BaseException as exc:
            self.finish(str(exc) or type(exc).__name__)
            raise
        self.seal()

    def enter(self, phase: str, *, total: int | None = None, unit: str = "users") -> None:
        """The round goes on to ``phase``, with ``total`` ``unit`` to do when known."""
        self.phase, self.unit, self.done, self.total = phase, unit, 0, total
        self._phase_start = self.clock()
        self._changed(phase_changed=True)

    def advance(self, n: int = 1, *, total: int | None = None) -> None:
        """``n`` more done in this phase (and the total, when it grew)."""
        if not self.running:
            return
        self.done += n
        if total is not None:
            self.total = total
        self._changed()

    def expect(self, ids: Iterable[str]) -> None:
        """The round handed the users ``ids`` to others to apply: the applying phase counts them."""
        new = set(ids) - self._waiting
        if not new or not self.running:
            return
        if self.phase != APPLYING:
            self.enter(APPLYING, total=0)
        self._waiting |= new
        self.total = (self.total or 0) + len(new)
        self._changed()

    def settle(self, user_id: str) -> None:
        """A user the round expects was applied (or given up on)."""
        if user_id not in self._waiting:
            return
        self._waiting.discard(user_id)
        self.advance()
        if self._sealed and not self._waiting:
            self.finish()

    def seal(self) -> None:
        """The round expects nothing more: it finishes when what it expects is settled."""
        self._sealed = True
        if not self._waiting and self.running:
            self.finish()

    def settled_elsewhere(self) -> None:
        """What the sealed round still expects will not be settled here (applied by another replica,
        or given up by the dispatcher): it finishes."""
        if self._sealed and self._waiting:
            self.finish()

    def finish(self, error: str | None = None) -> None:
        """The round ended (failed with ``error``)."""
        if not self.running:
            return
        self.error = error
        self.finished_at = self.wall()
        self._waiting.clear()
        self._sealed = True
        self.phase = IDLE
        self._round_end = self.clock()
        self._changed(phase_changed=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the round began (its whole length once finished)."""
        end = self._round_end if self._round_end is not None else self.clock()
        return max(0.0, end - self._round_start)

    def rate(self) -> float | None:
        """Done per second in this phase so far (None before the first one)."""
        seconds = self.clock() - self._phase_start
        return self.done / seconds if self.done and seconds > 0 else None

    def eta(self) -> float | None:
        """Seconds left in this phase at the current rate (None when it cannot be told)."""
        rate = self.rate()
        if rate is None or self.total is None:
            return None
        return max(0, self.total - self.done) / rate

    def summary(self) -> str:
        """One line for people, e.g. ``applying 400/2000 users, 35.2/s, ETA 45 s``."""
        if not self.running:
            if self.finished_at is None:
                return "idle"
            outcome = f"failed: {self.error}" if self.error else "finished"
            return f"{self.round} {outcome} in {seconds(self.elapsed)}"
        count, rate, eta = self.figures()
        return ", ".join(part for part in (f"{self.phase} {count}".rstrip(), rate, eta) if part)

    def figures(self) -> tuple[str, str, str]:
        """The phase's count (``400/2000 users``), rate (``35.2/s``) and time left (``ETA 45 s``),
        each empty when there is nothing to tell yet."""
        if self.total is None and not self.done:
            count = ""
        else:
            count = (f"{self.done}/{self.total}" if self.total is not None else str(self.done)) + f" {self.unit}"
        rate, eta = self.rate(), self.eta()
        left = f"ETA {seconds(eta)}" if eta is not None and self.done < (self.total or 0) else ""
        return count.rstrip(), f"{rate:.1f}/s" if rate is not None else "", left

    def as_dict(self) -> dict[str, Any]:
        """The state for ``/status.json`` (``running`` false: the last round's outcome, if any)."""
        rate, eta = self.rate(), self.eta()
        return {
            "running": self.running, "round": self.round, "phase": self.phase, "unit": self.unit,
            "done": self.done, "total": self.total,
            "rate_per_second": round(rate, 1) if rate is not None and self.running else None,
            "eta_seconds": round(eta, 1) if eta is not None and self.running else None,
            "started_at": self.started_at, "finished_at": self.finished_at, "error": self.error,
            "elapsed_seconds": round(self.elapsed, 1) if self.started_at is not None else None,
            "summary": self.summary(),
        }

    def _changed(self, *, phase_changed: bool = False) -> None:
        self.phase_changed = phase_changed
        if self.listener is not None:
            self.listener(self)


def seconds(value: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``1.5 h``."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"
