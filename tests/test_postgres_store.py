"""What only the PostgreSQL store has: the schema made under a lock by whoever opens first, the
password kept out of every message, and connection failures reported as store errors."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from reactor.config import StoreSettings
from reactor.errors import StoreError
from reactor.secret import Secret
from reactor.store import AuditRow, PostgresStore, open_store
from reactor.store.base import JournalItem
from reactor.store.postgres import MIGRATIONS
from tests.support.postgres import PASSWORD, Cluster
from tests.support.servers import free_port


def item(user: str) -> JournalItem:
    return JournalItem("user", user, time.time(), {"id": user}, "aaaaaaaa-0000-0000-0000-000000000001", "updated")


async def test_two_stores_opening_a_fresh_database_at_once_both_succeed_with_one_schema(
    postgres_cluster: Cluster, postgres_url: str
) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(postgres_url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
            tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await conn.close()
        assert versions == list(range(1, len(MIGRATIONS) + 1)), "the schema was made once"
        assert tables == {"schema_version", "journal", "subscriptions", "meta", "mappings", "members", "dead_letters",
                          "audit", "replicas", "leases", "claims"}
        seqs = await stores[0].append([item("u-anna")])
        assert [e.seq for e in await stores[3].pending()] == seqs
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_reopening_keeps_the_schema_and_a_newer_schema_is_refused(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    await first.open()
    await first.close()
    again = PostgresStore(postgres_url)
    await again.open()
    await again.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == len(MIGRATIONS)
        await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="schema is at version 99, newer than this reactor knows"):
        await PostgresStore(postgres_url).open()


async def test_the_password_can_come_from_store_password(postgres_cluster: Cluster, postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    bare = postgres_cluster.url(database, password=None)
    with pytest.raises(StoreError, match="password"):
        await open_store(StoreSettings(url=bare)).open()
    store = open_store(StoreSettings(url=bare, password=Secret(PASSWORD)))
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("where", ["url", "store.password"])
async def test_a_wrong_password_is_a_store_error_that_names_the_server_but_not_the_password(
    postgres_cluster: Cluster, postgres_url: str, where: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    wrong = "Wr0ng-pässword:@/?"
    if where == "url":
        store = open_store(StoreSettings(url=postgres_cluster.url(database, password=wrong)))
    else:
        store = open_store(StoreSettings(url=postgres_cluster.url(database, password=None), password=Secret(wrong)))
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"reactor@127.0.0.1:{postgres_cluster.port}/{database}" in message
    assert "password authentication failed" in message
    assert "Wr0ng" not in message and "Wr0ng" not in repr(store)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_nothing_listening_is_a_store_error_naming_host_port_and_database() -> None:
    port = free_port()
    store = open_store(StoreSettings(url=f"postgresql://reactor:url-s3cret@127.0.0.1:{port}/reactor"))
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert str(caught.value).startswith(f"cannot connect to PostgreSQL at reactor@127.0.0.1:{port}/reactor: ")
    assert "url-s3cret" not in str(caught.value)


async def test_after_cut_connections_a_write_is_journaled_or_a_store_error_and_the_pool_reconnects(
    postgres_cluster: Cluster, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        first = await store.append([item("u-before")])
        admin = await postgres_cluster.admin()
        try:
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                postgres_url.rsplit("/", 1)[1],
            )
        finally:
            await admin.close()
        assert cut >= 1
        journaled = ["u-before"]
        try:  # a connection the pool has not yet seen closed fails this one write
            await store.append([item("u-racing")])
            journaled.append("u-racing")
        except StoreError as exc:
            assert str(exc).startswith(f"journal write failed on reactor@127.0.0.1:{postgres_cluster.port}/")
        again = await store.append([item("u-after")])
        assert [e.object_id for e in await store.pending()] == [*journaled, "u-after"]
        assert again[0] > first[0]
    finally:
        await store.close()


async def test_a_dropped_database_makes_writes_and_pings_store_errors(postgres_cluster: Cluster, postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await postgres_cluster.drop_database(postgres_url.rsplit("/", 1)[1])
        with pytest.raises(StoreError) as caught:
            await store.append([item("u-nowhere")])
        assert PASSWORD not in str(caught.value)
        with pytest.raises(StoreError, match="does not exist"):
            await store.ping()
    finally:
        await store.close()


async def test_a_database_of_the_first_schema_is_migrated_to_the_audit(postgres_url: str) -> None:
    class FirstSchema(PostgresStore):
        migrations = MIGRATIONS[:1]

    old = FirstSchema(postgres_url)
    await old.open()
    await old.set_meta("delta:users", "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%3D")
    await old.close()
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert await store.get_meta("delta:users") == "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%3D"
        row = AuditRow(1_700_000_000.0, "7c1f0e2a-51b4-4c1e-9d0a-2f6e8b3c4d5e",
                       "anna.o'brien_fabrikam.com#EXT#@contoso.onmicrosoft.com", "create_user", "create user anna",
                       "notification", "1 notification(s) (updated)", journal_seqs=(7,))
        await store.record_audit([row])
        assert await store.audit() == [row]
    finally:
        await store.close()
