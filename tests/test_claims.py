"""Batched claims (:class:`reactor.claims.ClaimBook`) on a real PostgreSQL store: many units cost
few statements, a key given up and wanted again is claimed after its release reached the database,
and a statement whose outcome is unknown leaves no claim behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from reactor.claims import ClaimBook
from reactor.errors import StoreError
from reactor.store import PostgresStore
from reactor.store.base import ClaimKey

TTL = 30.0


class Counting:
    """The store's claim and release, counted (and failing on demand)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.calls: list[tuple[str, int]] = []
        self.fail_next = 0

    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]:
        self.calls.append(("claim", len(keys)))
        if self.fail_next:
            self.fail_next -= 1
            await self.store.claim(keys, ttl)  # it reached the database; the answer is "lost"
            raise StoreError("connection lost while claiming")
        return await self.store.claim(keys, ttl)

    async def release(self, keys: Sequence[ClaimKey]) -> None:
        self.calls.append(("release", len(keys)))
        await self.store.release(keys)


@pytest.fixture
async def two(postgres_url: str) -> AsyncIterator[tuple[Counting, PostgresStore]]:
    mine, other = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await mine.open()
    await other.open()
    try:
        yield Counting(mine), other
    finally:
        await mine.close()
        await other.close()


@pytest.fixture
async def book(two: tuple[Counting, PostgresStore]) -> AsyncIterator[ClaimBook]:
    book = ClaimBook(two[0], TTL)
    book.start()
    try:
        yield book
    finally:
        await book.stop()


def users(n: int) -> list[ClaimKey]:
    return [("user", f"{i:08d}-0000-4000-8000-000000000000") for i in range(n)]


async def test_two_hundred_units_at_once_cost_a_couple_of_statements(
    two: tuple[Counting, PostgresStore], book: ClaimBook
) -> None:
    counting, other = two
    keys = users(200)
    book.note(keys[:150])  # journaled here: claimed ahead
    results = await asyncio.gather(*(book.acquire([k]) for k in keys))
    assert all(results)
    assert len(counting.calls) <= 3, counting.calls
    assert await other.claim(keys[:5], TTL) == [], "held in the database"
    book.release(keys)
    await book.flush()
    assert await other.claim(keys[:5], TTL) == keys[:5]


async def test_a_key_given_up_and_wanted_again_is_never_lost_to_another_replica(
    two: tuple[Counting, PostgresStore], book: ClaimBook
) -> None:
    other = two[1]
    anna = users(1)
    assert await book.acquire(anna)
    book.release(anna)
    assert await book.acquire(anna), "wanted again before the release was sent: kept"
    assert await other.claim(anna, TTL) == []
    book.release(anna)
    await book.flush()
    assert await other.claim(anna, TTL) == anna
    assert not await book.acquire(anna), "another replica holds it now"


async def test_a_claim_whose_answer_was_lost_is_released_so_it_cannot_block_others(
    two: tuple[Counting, PostgresStore], book: ClaimBook
) -> None:
    counting, other = two
    bo = users(2)[1:]
    counting.fail_next = 1
    assert not await book.acquire(bo), "unknown outcome: not run"
    await book.flush()
    assert await other.claim(bo, TTL) == bo, "the doubtful claim was released"
