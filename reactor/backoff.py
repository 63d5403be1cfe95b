"""The one exponential backoff of the reactor (retries, the dispatcher's failed units, subscriptions).

``delay(n)`` after the ``n``-th consecutive failure (1-based) is ``min(maximum, initial * 2 ** (n - 1))``,
shortened by a random share of at most ``jitter`` (0: exact, 0.5: between half and all of it), so
that many objects failing together do not come back in step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff: ``initial`` and ``maximum`` in seconds, ``jitter`` a share in [0, 1]."""

    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 0.0
    rand: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def ceiling(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures before jitter."""
        return min(self.maximum, self.initial * 2.0 ** max(0, failures - 1))

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1-based), jitter included."""
        ceiling = self.ceiling(failures)
        return ceiling * (1.0 - self.jitter * self.rand())
