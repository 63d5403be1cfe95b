"""The connection layer under the PostgreSQL store: asyncpg pool, migrations under a lock, group commit.

Journal appends wait in a list; one writer task takes every append waiting, inserts their rows with
one statement (its own transaction) and answers every caller once PostgreSQL has committed. While a
commit is in flight the next appends gather, so concurrent webhook requests share commits as they do
on SQLite. Every other operation runs on a pooled connection in a transaction of its own.

At ``open()`` the schema is created or migrated inside a transaction holding
``pg_advisory_xact_lock``: processes opening the same database at once take turns, and the second
finds the schema the first made. ``schema_version`` records each migration applied.

The password (in the URL, given apart, or an Entra access token that
:class:`~reactor.store.entra_token.EntraTokenPassword` gives each new connection) never appears in an
error message or a log line: errors name ``user@host:port/database``. The queries are in
:mod:`reactor.store.postgres`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import orjson

from reactor.errors import StoreError
from reactor.metrics import JOURNAL_WRITE_SECONDS
from reactor.secret import Secret
from reactor.store.base import JournalItem, new_replica_id
from reactor.store.entra_token import EntraTokenPassword

T = TypeVar("T")

SCHEMA_LOCK = 0x7265_6163_746F_7200  # "reactor\0": the advisory lock taken while migrating
_INSERT_JOURNAL = (
    "INSERT INTO journal (kind, object_id, subscription_id, change_type, received_at, payload, owner)"
    " SELECT k, o, s, c, r, p, $7::text"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::bytea[]) AS t(k, o, s, c, r, p)"
    " RETURNING seq"
)
# InternalClientError: a connection the server ended (pg_terminate_backend, a failover) can surface as
# "cannot switch to state" from asyncpg instead of an InterfaceError.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, asyncio.TimeoutError)


class PostgresWriter:
    """A pool on one PostgreSQL database (``postgresql://user@host:port/db``), the schema migrated at
    :meth:`open`, and the journal's group-commit writer. ``password`` (``store.password``), when
    given, is used instead of a password in the URL; an :class:`EntraTokenPassword` gives an access
    token for every new connection instead (``store.entra_auth``).
    :class:`~reactor.store.postgres.PostgresStore` puts the queries on top."""

    shared = True
    """Several processes may use one PostgreSQL database at once (replicas)."""

    migrations: tuple[str, ...] = ()
    """Migration ``n`` (1-based) brings the schema from version ``n - 1`` to ``n``; set by the subclass."""

    def __init__(
        self,
        url: str,
        *,
        password: Secret | str | EntraTokenPassword = "",
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        replica_id: str = "",
    ) -> None:
        parts = urlsplit(url)
        self.replica_id = replica_id or new_replica_id()
        self._token: EntraTokenPassword | None = None
        given = ""
        if isinstance(password, EntraTokenPassword):
            self._token = password
        else:
            given = password.reveal() if isinstance(password, Secret) else password
        self._password = Secret(given or unquote(parts.password or ""))
        self._dsn = _without_password(url)
        self.target = _target(parts)
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._appends: list[tuple[Sequence[JournalItem], asyncio.Future[list[int]]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    # lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                dsn=self._dsn,
                password=self._token or self._password.reveal() or None,
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                reset=_keep_session,
            )
        except (*_DB_ERRORS, ValueError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.target}: {self._reason(exc)}") from None
        except StoreError as exc:  # no access token for the first connections
            raise StoreError(f"cannot connect to PostgreSQL at {self.target}: {exc}") from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, self.migrations)
        except BaseException as exc:
            await _close_pool(pool)
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, _DB_ERRORS):
                raise StoreError(f"cannot prepare the schema in {self.target}: {self._reason(exc)}") from None
            raise
        self._loop = asyncio.get_running_loop()
        self._pool = pool
        self._closing = False
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="reactor-store-writer")

    async def close(self) -> None:
        pool = self._pool
        if pool is None:
            return
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer  # the appends already accepted are written first
        self._pool = None
        self._writer = None
        await _close_pool(pool)

    async def ping(self) -> None:
        await self._run(lambda c: c.fetchval("SELECT 1"))

    def _reason(self, exc: BaseException) -> str:
        """What went wrong, in words that name no secret."""
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no answer within {self.command_timeout:g} s"
        elif isinstance(exc, asyncpg.PostgresError):
            text = f"{exc.sqlstate} {exc}" if getattr(exc, "sqlstate", None) else str(exc)
        else:
            text = str(exc) or type(exc).__name__
        for secret in (self._password.reveal(), self._token.current.reveal() if self._token else ""):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(connection)`` on a pooled connection; every database failure as a :class:`StoreError`."""
        pool = self._pool
        if pool is None:
            raise StoreError("store is not open")
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except _DB_ERRORS as exc:
            raise StoreError(f"store operation failed on {self.target}: {self._reason(exc)}") from None

    async def _transaction(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def job(conn: Any) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self._run(job)

    # journal -------------------------------------------------------------------------------------
    def append(self, items: Sequence[JournalItem]) -> asyncio.Future[list[int]]:
        """Journal ``items``; every append waiting when the writer is free goes into its next commit.
        Call it from the event loop that opened the store."""
        loop = self._loop
        if self._pool is None or loop is None or self._closing:
            raise StoreError("store is not open")
        fut: asyncio.Future[list[int]] = loop.create_future()
        self._appends.append((items, fut))
        self._wake.set()
        return fut

    async def _write_loop(self) -> None:
        while True:
            if not self._appends:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            waiting, self._appends = self._appends, []
            await self._write(waiting)

    async def _write(self, waiting: list[tuple[Sequence[JournalItem], asyncio.Future[list[int]]]]) -> None:
        kinds: list[str] = []
        objects: list[str] = []
        subs: list[str] = []
        changes: list[str] = []
        received: list[float] = []
        payloads: list[bytes] = []
        for items, _ in waiting:
            for i in items:
                kinds.append(i.kind)
                objects.append(i.object_id)
                subs.append(i.subscription_id)
                changes.append(i.change_type)
                received.append(i.received_at)
                payloads.append(orjson.dumps(i.payload))
        started = time.perf_counter()
        try:
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                # One statement is one transaction: insert and commit in a single round trip.
                rows = await conn.fetch(_INSERT_JOURNAL, kinds, objects, subs, changes, received, payloads, self.replica_id)
            # The identity is drawn row by row in the order unnest gives them: sorted, they match the items.
            seqs = sorted(r[0] for r in rows)
        except Exception as exc:
            reason = self._reason(exc) if isinstance(exc, _DB_ERRORS) else repr(exc)
            error = StoreError(f"journal write failed on {self.target}: {reason}")
            for _, fut in waiting:
                if not fut.done():
                    fut.set_exception(error)
            return
        JOURNAL_WRITE_SECONDS.observe(time.perf_counter() - started)
        start = 0
        for items, fut in waiting:
            if not fut.done():
                fut.set_result(seqs[start : start + len(items)])
            start += len(items)


async def _keep_session(conn: Any) -> None:
    """A connection back in the pool needs no reset query: the store holds no session state (no
    session advisory lock, cursor, LISTEN or SET), and asyncpg still rolls back an open transaction.
    The default ``RESET ALL; UNLISTEN *; …`` cost a round trip on every release (7% of the CPU of
    the intake under load, bench/README.md)."""


async def _migrate(conn: Any, migrations: tuple[str, ...]) -> None:
    """Bring the schema to the newest version, one process at a time (advisory lock, released at commit)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        if current > len(migrations):
            raise StoreError(
                f"the database schema is at version {current}, newer than this reactor knows ({len(migrations)}):"
                " run the newer reactor, or a database of this version"
            )
        for version in range(current + 1, len(migrations) + 1):
            await conn.execute(migrations[version - 1])
            await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", version, time.time())


async def _close_pool(pool: Any) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except (*_DB_ERRORS, RuntimeError):
        pool.terminate()


def _target(parts: Any) -> str:
    """``user@host:port/database`` of a PostgreSQL URL (no password)."""
    user = unquote(parts.username or "")
    try:
        port = parts.port or 5432
    except ValueError:
        port = "?"
    host = parts.hostname or "localhost"
    database = unquote(parts.path.lstrip("/")) or user
    return f"{user + '@' if user else ''}{host}:{port}/{database}"


def _without_password(url: str) -> str:
    """``url`` without the password of its user part (the pool gets the password apart)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}@{host}"))
