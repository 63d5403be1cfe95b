"""``store.entra_auth``: the PostgreSQL password is a Microsoft Entra access token, fetched when a
connection opens and refreshed before it expires.

A real server with a SCRAM login role stands in for Azure Database for PostgreSQL; the only fake is
the credential (no Azure here), whose tokens are the role's password. ``ALTER ROLE`` rotates that
password, as Entra issues a new token, so a connection that used a stale token would be refused.
"""

from __future__ import annotations

import itertools
import logging
import time
from types import TracebackType

import asyncpg
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from reactor.errors import StoreError
from reactor.store import PostgresStore
from reactor.store.base import JournalItem
from reactor.store.entra_token import SCOPE, EntraTokenPassword
from tests.support.eventually import eventually
from tests.support.postgres import Cluster

IDENTITY = "askcody-reactor-id"  # the managed identity's name is the PostgreSQL role
T0 = 1_900_000_000.0
HOUR = 3600.0
_roles = itertools.count(1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeCredential:
    """An azure-identity (aio) credential: hands out ``tokens`` in turn, each valid for an hour from
    the clock's time; raises ``failure`` when set."""

    def __init__(self, clock: Clock, tokens: list[str]) -> None:
        self.clock = clock
        self.tokens = list(tokens)
        self.failure: Exception | None = None
        self.scopes: list[tuple[str, ...]] = []
        self.opened = 0
        self.closed = 0

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        if self.failure is not None:
            raise self.failure
        return AccessToken(self.tokens.pop(0), int(self.clock.now + HOUR))

    async def __aenter__(self) -> FakeCredential:
        self.opened += 1
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.closed += 1


def token(n: int) -> str:
    # The shape of an Entra access token (a JWT), unique per test run.
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJ{n}{time.time_ns()}.c2lnbmF0dXJl-{n}"


def item(user: str) -> JournalItem:
    return JournalItem("user", user, time.time(), {"id": user}, "aaaaaaaa-0000-0000-0000-000000000001", "updated")


async def set_password(cluster: Cluster, role: str, password: str) -> None:
    conn = await cluster.admin()
    try:
        literal = await conn.fetchval("SELECT quote_literal($1::text)", password)
        await conn.execute(f'ALTER ROLE "{role}" PASSWORD {literal}')
    finally:
        await conn.close()


async def cut_connections(cluster: Cluster, role: str) -> None:
    """End every session of ``role``: the pool must open new connections (and ask for a password)."""
    conn = await cluster.admin()
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
    finally:
        await conn.close()


async def answers(store: PostgresStore) -> bool:
    try:
        await store.ping()
    except Exception:  # a ping on a connection the server just ended may fail in any way before the pool notices
        return False
    return True


async def test_the_store_opens_and_works_with_the_token_as_password_fetched_once_for_every_connection(
    postgres_cluster: Cluster,
) -> None:
    role, clock = f"{IDENTITY}-{next(_roles)}", Clock()
    first = token(1)
    credential = FakeCredential(clock, [first])
    async with postgres_cluster.login_role(role, first) as url:
        password = EntraTokenPassword(lambda: credential, clock=clock)
        store = PostgresStore(url, password=password, min_connections=3)
        await store.open()
        try:
            seqs = await store.append([item("7c1f0e2a-51b4-4c1e-9d0a-2f6e8b3c4d5e")])
            assert [e.seq for e in await store.pending()] == seqs
            await store.set_meta("delta:users", "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%3D")
            assert await store.get_meta("delta:users") == "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%3D"
            clock.now += HOUR - 600  # ten minutes left: still the cached token
            await cut_connections(postgres_cluster, role)
            await eventually(lambda: answers(store), "the pool reconnects with the cached token")
        finally:
            await store.close()
    assert credential.scopes == [(SCOPE,)], "one fetch, for the Azure Database for PostgreSQL scope"
    assert credential.opened == credential.closed == 1, "the credential is closed after its fetch"
    assert first not in repr(store) and first not in repr(password)


async def test_a_token_near_its_expiry_is_refreshed_before_a_new_connection(postgres_cluster: Cluster) -> None:
    role, clock = f"{IDENTITY}-{next(_roles)}", Clock()
    first, second = token(1), token(2)
    credential = FakeCredential(clock, [first, second])
    async with postgres_cluster.login_role(role, first) as url:
        store = PostgresStore(url, password=EntraTokenPassword(lambda: credential, clock=clock))
        await store.open()
        try:
            await store.append([item("u-before")])
            # Entra issues a new token; the old one is no longer the role's password.
            await set_password(postgres_cluster, role, second)
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(url, password=first)
            clock.now += HOUR - 240  # four minutes left: inside the five-minute refresh margin
            await cut_connections(postgres_cluster, role)
            await eventually(lambda: answers(store), "the pool reconnects with a refreshed token")
            await store.append([item("u-after")])
            assert [e.object_id for e in await store.pending()] == ["u-before", "u-after"]
        finally:
            await store.close()
    assert len(credential.scopes) == 2


async def test_a_credential_failure_at_open_is_a_store_error_naming_the_server_and_the_cause(
    postgres_cluster: Cluster,
) -> None:
    role, clock = f"{IDENTITY}-{next(_roles)}", Clock()
    credential = FakeCredential(clock, [])
    credential.failure = ClientAuthenticationError(
        "ManagedIdentityCredential authentication unavailable. No identity has been assigned to this resource.\n"
        "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential authentication unavailable."
    )
    async with postgres_cluster.login_role(role, token(1)) as url:
        store = PostgresStore(url, password=EntraTokenPassword(lambda: credential, clock=clock))
        with pytest.raises(StoreError) as caught:
            await store.open()
    message = str(caught.value)
    assert message == (
        f"cannot connect to PostgreSQL at {role}@127.0.0.1:{postgres_cluster.port}/{url.rsplit('/', 1)[1]}: "
        "cannot get a Microsoft Entra access token for the PostgreSQL store: ClientAuthenticationError: "
        "ManagedIdentityCredential authentication unavailable. No identity has been assigned to this resource."
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_failed_refresh_uses_the_token_while_it_lasts_then_is_a_store_error_without_the_token(
    postgres_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    role, clock = f"{IDENTITY}-{next(_roles)}", Clock()
    first = token(1)
    credential = FakeCredential(clock, [first])
    async with postgres_cluster.login_role(role, first) as url:
        password = EntraTokenPassword(lambda: credential, clock=clock)
        store = PostgresStore(url, password=password)
        await store.open()
        try:
            credential.failure = ClientAuthenticationError(f"IMDS answered 500 (last token {first})")
            clock.now += HOUR - 120  # refresh due, the token still valid for two minutes
            await cut_connections(postgres_cluster, role)
            await eventually(lambda: answers(store), "the pool reconnects with the still valid token")
            assert "store_token_refresh_failed" in caplog.text
            clock.now += 100  # twenty seconds left: too little to hand it out
            await cut_connections(postgres_cluster, role)

            seen: list[str] = []

            async def refused() -> bool:
                try:
                    await store.ping()
                except StoreError as exc:
                    seen.append(str(exc))
                    return "Microsoft Entra" in str(exc)
                except Exception:  # the connection the server just ended, before the pool notices
                    return False
                return False

            await eventually(refused, "a new connection without a valid token fails")
            message = seen[-1]
            assert message == (
                "cannot get a Microsoft Entra access token for the PostgreSQL store: "
                "ClientAuthenticationError: IMDS answered 500 (last token <redacted>)"
            )
        finally:
            await store.close()
    assert first not in caplog.text and first not in message and first not in repr(password)
