"""Shared fixtures. ``tests/support`` holds helpers (servers, the SCIM target, the fault proxy, the
PostgreSQL cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reactor import retry
from reactor.store import SQLiteStore

# The PostgreSQL cluster (session-wide, started on first use) and the fixtures that run a test on
# every store (``store_url``, ``make_store``, ``any_store``).
pytest_plugins = ["tests.support.postgres", "tests.support.stores"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store in the test's temporary folder."""
    db = SQLiteStore(str(tmp_path / "reactor.db"))
    await db.open()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def retry_testing() -> Iterator[None]:
    """Retries without their sleeps for this test; the switch is restored afterwards."""
    with retry.testing():
        yield
