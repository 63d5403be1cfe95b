"""How ``reactor sync`` shows its progress on stderr: a rich bar on a terminal, plain lines when
stderr is a pipe or a file (a log stays readable), nothing with ``--json`` (stdout and stderr stay
clean for scripts). stdout is never written here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from reactor.sync.progress import Progress, seconds

LINE_EVERY_SECONDS = 2.0
"""Plain lines: at most one this often while a phase runs (plus one as each phase ends, one at the end)."""


def _ending(progress: Progress) -> str:
    took = seconds(progress.elapsed)
    return f"failed after {took}" if progress.error else f"done in {took}"


class PlainLines:
    """A :data:`~reactor.sync.progress.Listener` writing lines such as
    ``sync: applying 400/2000 users, 35.2/s, ETA 45 s``: the last state of each phase as it ends,
    at most one every ``every`` seconds in between, and ``sync: done in 63 s`` at the end."""

    def __init__(
        self, stream: TextIO, *, prefix: str = "sync", every: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.prefix = prefix
        self.every = every
        self.clock = clock
        self._last = ""
        self._written = ""
        self._written_at = clock()

    def __call__(self, progress: Progress) -> None:
        if progress.phase_changed:
            if self._last and self._last != self._written:
                self._write(self._last)
            self._last = progress.summary() if progress.running else ""
            if not progress.running:
                self._write(_ending(progress))
            return
        self._last = progress.summary()
        if self.clock() - self._written_at >= self.every:
            self._write(self._last)

    def _write(self, text: str) -> None:
        self.stream.write(f"{self.prefix}: {text}\n")
        self.stream.flush()
        self._written, self._written_at = text, self.clock()


class RichBars:
    """A :data:`~reactor.sync.progress.Listener` drawing one rich progress bar per phase (the
    count, the rate, the time left and the time taken), kept on screen as the phase ends."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = Bar(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"), TimeElapsedColumn(),
            console=console, refresh_per_second=8, redirect_stdout=False, redirect_stderr=False,
        )
        self._task: TaskID | None = None

    def __call__(self, progress: Progress) -> None:
        if progress.phase_changed and self._task is not None:
            ended = next(task for task in self.bars.tasks if task.id == self._task)
            if not ended.total:
                # The phase ended without a total, or with nothing to do: shown as done.
                self.bars.update(self._task, total=max(1, ended.completed), completed=max(1, ended.completed))
            self.bars.stop_task(self._task)
            self._task = None
        if not progress.running:
            self.stop()
            self.console.print(f"sync: {_ending(progress)}", highlight=False)
            return
        count, rate, eta = progress.figures()
        if self._task is None:
            self.bars.start()
            self._task = self.bars.add_task(progress.phase, total=None, count="", rate="", eta="")
        self.bars.update(self._task, completed=progress.done, total=progress.total, count=count, rate=rate, eta=eta)

    def stop(self) -> None:
        self.bars.stop()


@contextmanager
def progress_view(stream: TextIO, *, quiet: bool = False) -> Iterator[Progress]:
    """A :class:`Progress` shown on ``stream``: bars on a terminal, plain lines otherwise, nothing
    when ``quiet`` (``--json``)."""
    if quiet:
        yield Progress()
        return
    if not stream.isatty():
        yield Progress(PlainLines(stream))
        return
    bars = RichBars(Console(file=stream))
    try:
        yield Progress(bars)
    finally:
        bars.stop()
