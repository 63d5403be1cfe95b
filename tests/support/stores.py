"""Fixtures that run a test on every store: SQLite and PostgreSQL (the store contract tests).

``store_url`` is parametrized over both kinds; a test asking for it (or for ``make_store`` or
``any_store``) runs once per kind, on an empty store of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from reactor.config import StoreSettings
from reactor.store import Store, open_store
from tests.support.postgres import Cluster

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """``store.url`` of an empty store of this test's own, once per kind of store (the contract tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reactor.db'}"
        return
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    async with cluster.database() as name:
        yield cluster.url(name)


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens a new store on ``store_url`` (built by ``open_store``) at each call; all closed at the end."""
    opened: list[Store] = []

    async def make() -> Store:
        db = open_store(StoreSettings(url=store_url))
        await db.open()
        opened.append(db)
        return db

    try:
        yield make
    finally:
        for db in reversed(opened):
            await db.close()


@pytest.fixture
async def any_store(make_store: StoreFactory) -> Store:
    """An open store of each kind (SQLite, PostgreSQL): the same test runs on both."""
    return await make_store()
