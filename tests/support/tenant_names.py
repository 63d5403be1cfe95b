"""Names shared by the end-to-end and operations tests (kept out of conftest modules, whose name
``conftest`` is the same in every folder and so cannot be imported from reliably)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ROLE = "Facility Management"
RECEPTION = "Reception Copenhagen"
PROVIDER = "Catering"

Eventually = Callable[[Callable[[], Awaitable[bool]], str], Awaitable[None]]
StackFactory = Callable[..., Any]
