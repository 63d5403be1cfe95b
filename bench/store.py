"""Journal append path on PostgreSQL: asyncpg against psycopg 3 (async, pooled), then the stores.

Starts a throwaway durable PostgreSQL cluster (fsync on, as in production; ``tests.support.postgres``)
and measures, in one run, with the load alternating between the contenders in rounds:

- drivers: the statement the PostgreSQL store runs for one group commit (one multi-row ``INSERT …
  SELECT FROM unnest(…) RETURNING seq``, its own transaction), with batches of 1 row (a lone webhook) and
  of 64 rows (a burst under group commit), on a pool of 4 connections driven by 4 concurrent tasks;
  commits/s and the client's CPU time per commit (what the intake's event loop pays);
- stores: ``PostgresStore.append`` against ``SQLiteStore.append`` (durable), 64 concurrent callers
  of 1 item each: appends/s and CPU µs per append.

    python -m bench.store [--rounds 3] [--seconds 2]

psycopg is not a dependency of the project: ``pip install 'psycopg[binary,pool]'`` to include it
(without it only asyncpg and the stores are measured).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from reactor.store.base import JournalItem
from tests.support.postgres import Cluster

TABLE = """
CREATE TABLE IF NOT EXISTS journal (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, object_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL, change_type TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    payload BYTEA NOT NULL
)"""
INSERT_ASYNCPG = (
    "INSERT INTO journal (kind, object_id, subscription_id, change_type, received_at, payload)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::bytea[]) RETURNING seq"
)
INSERT_PSYCOPG = INSERT_ASYNCPG.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s").replace(
    "$4", "%s").replace("$5", "%s").replace("$6", "%s")
TASKS = 4


def columns(rows: int, n: int) -> tuple[list[str], list[str], list[str], list[str], list[float], list[bytes]]:
    payload = orjson.dumps({"subscriptionId": "aaaaaaaa-0000-0000-0000-000000000001", "changeType": "updated",
                            "resource": f"Users/{n}", "resourceData": {"id": f"u-{n}"}})
    return (["user"] * rows, [f"u-{n}-{i}" for i in range(rows)], ["sub"] * rows, ["updated"] * rows,
            [time.time()] * rows, [payload] * rows)


Commit = Callable[[int, int], Awaitable[None]]


async def asyncpg_commit(url: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    pool = await asyncpg.create_pool(url, min_size=TASKS, max_size=TASKS)
    await pool.execute(TABLE)

    async def commit(rows: int, n: int) -> None:
        async with pool.acquire() as conn:
            await conn.fetch(INSERT_ASYNCPG, *columns(rows, n))

    return commit, pool.close


async def psycopg_commit(url: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=TASKS, max_size=TASKS, open=False, kwargs={"autocommit": True})
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute(TABLE)

    async def commit(rows: int, n: int) -> None:
        async with pool.connection() as conn:
            cur = await conn.execute(INSERT_PSYCOPG, columns(rows, n))  # type: ignore[arg-type]
            await cur.fetchall()

    return commit, pool.close


async def run_commits(commit: Commit, rows: int, seconds: float) -> tuple[float, float]:
    """Commits per second and client CPU µs per commit, ``TASKS`` tasks committing for ``seconds``."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def task() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await commit(rows, count)
            count += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task() for _ in range(TASKS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return count / wall, cpu / count * 1e6


async def run_appends(store: Any, seconds: float, callers: int = 64) -> tuple[float, float]:
    """Appends per second and CPU µs per append: ``callers`` tasks appending one item each, in turn."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await store.append([JournalItem("user", f"u-{count}", time.time(), {"id": f"u-{count}"}, "sub", "updated")])
            count += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return count / wall, cpu / count * 1e6


def line(name: str, figures: list[tuple[float, float]], unit: str) -> tuple[float, float]:
    rate = sum(f[0] for f in figures) / len(figures)
    cpu = sum(f[1] for f in figures) / len(figures)
    print(f"  {name:<24} {rate:>9.0f} {unit}/s   {cpu:>7.0f} CPU µs per {unit}")
    return rate, cpu


async def main(rounds: int, seconds: float) -> None:
    cluster = Cluster(durable=True)
    cluster.start()
    try:
        print(f"PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port} (fsync on); {rounds} rounds of {seconds} s")
        contenders: dict[str, Callable[[str], Awaitable[tuple[Commit, Callable[[], Awaitable[None]]]]]] = {
            "asyncpg": asyncpg_commit
        }
        if importlib.util.find_spec("psycopg_pool") is not None:
            contenders["psycopg"] = psycopg_commit
        else:
            print("psycopg is not installed: drivers not compared (pip install 'psycopg[binary,pool]')")
        opened = {}
        for name, make in contenders.items():
            db = await cluster.create_database()
            opened[name] = await make(cluster.url(db))
        for rows in (1, 64):
            print(f"drivers, {rows}-row group commits, {TASKS} concurrent:")
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in opened}
            for r in range(rounds):
                order = list(opened) if r % 2 == 0 else list(reversed(opened))
                for name in order:
                    figures[name].append(await run_commits(opened[name][0], rows, seconds))
            results = {name: line(name, f, "commit") for name, f in figures.items()}
            if "psycopg" in results:
                a, p = results["asyncpg"], results["psycopg"]
                print(f"  ratio asyncpg/psycopg: commits/s {a[0] / p[0]:.2f}, CPU per commit {a[1] / p[1]:.2f}")
        for _, close in opened.values():
            await close()

        from reactor.store.postgres import PostgresStore
        from reactor.store.sqlite import SQLiteStore

        with tempfile.TemporaryDirectory() as tmp:
            pg = PostgresStore(cluster.url(await cluster.create_database()))
            lite = SQLiteStore(str(Path(tmp) / "bench.db"))
            await pg.open()
            await lite.open()
            try:
                print("stores, append of 1 item, 64 concurrent callers (group commit):")
                stores: dict[str, Any] = {"PostgresStore": pg, "SQLiteStore": lite}
                per_store: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
                for r in range(rounds):
                    for name in (stores if r % 2 == 0 else reversed(list(stores))):
                        per_store[name].append(await run_appends(stores[name], seconds))
                res = {name: line(name, f, "append") for name, f in per_store.items()}
                p, s = res["PostgresStore"], res["SQLiteStore"]
                print(f"  ratio PostgresStore/SQLiteStore: appends/s {p[0] / s[0]:.2f}, CPU per append {p[1] / s[1]:.2f}")
            finally:
                await pg.close()
                await lite.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.seconds))
