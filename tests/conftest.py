"""Shared fixtures. ``tests/support`` holds helpers (servers, the SCIM target, the fault proxy)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from reactor.store import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store in the test's temporary folder."""
    db = SQLiteStore(str(tmp_path / "reactor.db"))
    await db.open()
    try:
        yield db
    finally:
        await db.close()
