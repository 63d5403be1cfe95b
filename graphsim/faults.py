"""Fault knobs: what goes wrong in notification delivery, and which Graph requests fail on purpose.

Delivery faults apply to change notifications when they are queued (lifecycle notifications and
validation handshakes are exempt): ``drop_rate`` (lost for good), ``duplicate_rate`` (sent twice),
``delay_seconds`` (held back), ``reorder`` (each batch shuffled). Draws use :attr:`Faults.random`;
:meth:`Faults.seed` makes a run repeatable.

Injections make the next ``count`` Graph requests whose path starts with ``path_prefix`` (None: any)
answer ``status`` (429 for throttling) with a ``Retry-After`` header when ``retry_after`` is set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

_ERROR_CODES = {
    429: ("TooManyRequests", "Too many requests. Retry after the number of seconds in Retry-After."),
    500: ("generalException", "An unexpected error occurred."),
    502: ("UnknownError", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Retry later."),
    504: ("UnknownError", "Gateway timeout."),
}


@dataclass
class Injection:
    """Fail the next ``remaining`` requests under ``path_prefix`` with ``status``."""

    remaining: int
    status: int = 429
    retry_after: float | None = None
    path_prefix: str | None = None

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path_prefix is None or path.startswith(self.path_prefix))

    @property
    def code(self) -> str:
        return _ERROR_CODES.get(self.status, ("UnknownError", ""))[0]

    @property
    def message(self) -> str:
        return _ERROR_CODES.get(self.status, ("", f"Injected failure {self.status}."))[1]

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        seconds = self.retry_after
        return {"Retry-After": str(int(seconds)) if float(seconds).is_integer() else str(seconds)}


class Faults:
    """The simulator's fault knobs (all off by default)."""

    def __init__(self) -> None:
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.delay_seconds = 0.0
        self.reorder = False
        self.random = random.Random()
        self.injections: list[Injection] = []

    def seed(self, value: int | None) -> None:
        """Seed the random draws (drop, duplicate, reorder, retry jitter)."""
        self.random.seed(value)

    def inject(self, count: int, status: int = 429, retry_after: float | None = None, path_prefix: str | None = None) -> None:
        """Make the next ``count`` matching Graph requests answer ``status``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be a 4xx or 5xx code")
        self.injections.append(Injection(count, status, retry_after, path_prefix))

    def take(self, path: str) -> Injection | None:
        """Consume one matching injection for a request to ``path``, if any."""
        for injection in self.injections:
            if injection.matches(path):
                injection.remaining -= 1
                if injection.remaining == 0:
                    self.injections.remove(injection)
                return injection
        return None

    def drops(self) -> bool:
        return self.drop_rate > 0 and self.random.random() < self.drop_rate

    def duplicates(self) -> bool:
        return self.duplicate_rate > 0 and self.random.random() < self.duplicate_rate

    def reset(self) -> None:
        """Turn every fault off."""
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.delay_seconds = 0.0
        self.reorder = False
        self.injections.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "drop_rate": self.drop_rate,
            "duplicate_rate": self.duplicate_rate,
            "delay_seconds": self.delay_seconds,
            "reorder": self.reorder,
            "injections": [
                {"remaining": i.remaining, "status": i.status, "retry_after": i.retry_after, "path_prefix": i.path_prefix}
                for i in self.injections
            ],
        }
