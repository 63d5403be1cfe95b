"""The PostgreSQL store: asyncpg with a pool, group commit for the journal, migrations under a lock.

Journal appends wait in a list; one writer task takes every append waiting, inserts their rows with
one statement (its own transaction) and answers every caller once PostgreSQL has committed. While a
commit is in flight the next appends gather, so concurrent webhook requests share commits as they do
on SQLite. Every other operation runs on a pooled connection in a transaction of its own.

At ``open()`` the schema is created or migrated inside a transaction holding
``pg_advisory_xact_lock``: processes opening the same database at once take turns, and the second
finds the schema the first made. ``schema_version`` records each migration applied.

The password (in the URL or given apart) never appears in an error message or a log line: errors
name ``user@host:port/database``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import orjson

from reactor.errors import StoreError
from reactor.metrics import JOURNAL_WRITE_SECONDS
from reactor.secret import Secret
from reactor.store.base import (
    AppliedChange,
    DeadLetter,
    JournalEntry,
    JournalItem,
    ObjectMapping,
    SubscriptionRecord,
)

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE journal (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        object_id TEXT NOT NULL,
        subscription_id TEXT NOT NULL DEFAULT '',
        change_type TEXT NOT NULL DEFAULT '',
        received_at DOUBLE PRECISION NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,
        resource TEXT NOT NULL,
        change_type TEXT NOT NULL,
        notification_url TEXT NOT NULL,
        lifecycle_url TEXT NOT NULL,
        client_state TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        last_renewed_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        last_reauthorized_at DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE mappings (
        kind TEXT NOT NULL,
        entra_id TEXT NOT NULL,
        scim_id TEXT NOT NULL,
        state BYTEA NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, entra_id)
    );
    CREATE TABLE members (
        group_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX members_by_user ON members (user_id);
    CREATE TABLE dead_letters (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        object_id TEXT NOT NULL,
        change BYTEA NOT NULL,
        error TEXT NOT NULL,
        attempts BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE changes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        entra_id TEXT NOT NULL,
        what TEXT NOT NULL,
        why TEXT NOT NULL,
        who TEXT NOT NULL DEFAULT ''
    );
    """,
)
"""Migration ``n`` (1-based) brings the schema from version ``n - 1`` to ``n``; append, never edit."""

SCHEMA_LOCK = 0x7265_6163_746F_7200  # "reactor\0": the advisory lock taken while migrating
_KEEP_CHANGES = 1000
# Text is ordered bytewise, as SQLite does, whatever collation the database was created with.
_C = 'COLLATE "C"'
_INSERT_JOURNAL = (
    "INSERT INTO journal (kind, object_id, subscription_id, change_type, received_at, payload)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::bytea[]) RETURNING seq"
)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


class PostgresStore:
    """A :class:`~reactor.store.base.Store` on a PostgreSQL database (``postgresql://user@host:port/db``).

    ``password`` (``store.password``), when given, is used instead of a password in the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        password: Secret | str = "",
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
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
        return f"PostgresStore({self.target!r})"

    # lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                dsn=self._dsn,
                password=self._password.reveal() or None,
                min_size=self.min_connections,
                max_size=self.max_connections,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )
        except (*_DB_ERRORS, ValueError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.target}: {self._reason(exc)}") from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
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
        secret = self._password.reveal()
        return text.replace(secret, "<redacted>") if secret else text

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
                rows = await conn.fetch(_INSERT_JOURNAL, kinds, objects, subs, changes, received, payloads)
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

    async def pending(self, after_seq: int = 0, limit: int = 10_000) -> list[JournalEntry]:
        rows = await self._run(
            lambda c: c.fetch(
                "SELECT seq, kind, object_id, subscription_id, change_type, received_at, payload FROM journal"
                " WHERE seq > $1 ORDER BY seq LIMIT $2",
                after_seq, limit,
            )
        )
        return [
            JournalEntry(
                seq=r[0], kind=r[1], object_id=r[2], subscription_id=r[3], change_type=r[4],
                received_at=r[5], payload=orjson.loads(r[6]),
            )
            for r in rows
        ]

    async def mark_done(self, seqs: Sequence[int]) -> None:
        done = sorted(set(seqs))
        await self._run(lambda c: c.execute("DELETE FROM journal WHERE seq = ANY($1::bigint[])", done))

    async def backlog(self) -> tuple[int, float | None]:
        row = await self._run(lambda c: c.fetchrow("SELECT count(*), min(received_at) FROM journal"))
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    # subscriptions -------------------------------------------------------------------------------
    async def save_subscription(self, record: SubscriptionRecord) -> None:
        r = record
        await self._run(
            lambda c: c.execute(
                "INSERT INTO subscriptions (id, resource, change_type, notification_url, lifecycle_url, client_state,"
                " expires_at, created_at, last_renewed_at, last_reauthorized_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO UPDATE SET"
                " resource = excluded.resource, change_type = excluded.change_type,"
                " notification_url = excluded.notification_url, lifecycle_url = excluded.lifecycle_url,"
                " client_state = excluded.client_state, expires_at = excluded.expires_at,"
                " created_at = excluded.created_at, last_renewed_at = excluded.last_renewed_at,"
                " last_reauthorized_at = excluded.last_reauthorized_at",
                r.id, r.resource, r.change_type, r.notification_url, r.lifecycle_url, r.client_state,
                r.expires_at, r.created_at, r.last_renewed_at, r.last_reauthorized_at,
            )
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM subscriptions WHERE id = $1", subscription_id))

    async def subscriptions(self) -> list[SubscriptionRecord]:
        rows = await self._run(
            lambda c: c.fetch(
                "SELECT id, resource, change_type, notification_url, lifecycle_url, client_state, expires_at,"
                f" created_at, last_renewed_at, last_reauthorized_at FROM subscriptions ORDER BY resource {_C}, id {_C}"
            )
        )
        return [SubscriptionRecord(*r) for r in rows]

    # meta ----------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        value = await self._run(lambda c: c.fetchval("SELECT value FROM meta WHERE key = $1", key))
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            await self._run(lambda c: c.execute("DELETE FROM meta WHERE key = $1", key))
        else:
            await self._run(
                lambda c: c.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    key, value,
                )
            )

    # mappings ------------------------------------------------------------------------------------
    async def get_mapping(self, kind: Literal["user", "group"], entra_id: str) -> ObjectMapping | None:
        row = await self._run(
            lambda c: c.fetchrow(
                "SELECT scim_id, state, updated_at FROM mappings WHERE kind = $1 AND entra_id = $2", kind, entra_id
            )
        )
        if row is None:
            return None
        return ObjectMapping(kind=kind, entra_id=entra_id, scim_id=row[0], state=orjson.loads(row[1]), updated_at=row[2])

    async def put_mapping(self, mapping: ObjectMapping) -> None:
        m = mapping
        await self._run(
            lambda c: c.execute(
                "INSERT INTO mappings (kind, entra_id, scim_id, state, updated_at) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (kind, entra_id) DO UPDATE SET scim_id = excluded.scim_id, state = excluded.state,"
                " updated_at = excluded.updated_at",
                m.kind, m.entra_id, m.scim_id, orjson.dumps(m.state), m.updated_at or time.time(),
            )
        )

    async def delete_mapping(self, kind: Literal["user", "group"], entra_id: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM mappings WHERE kind = $1 AND entra_id = $2", kind, entra_id))

    async def mappings(self, kind: Literal["user", "group"]) -> list[ObjectMapping]:
        rows = await self._run(
            lambda c: c.fetch(
                f"SELECT entra_id, scim_id, state, updated_at FROM mappings WHERE kind = $1 ORDER BY entra_id {_C}", kind
            )
        )
        return [
            ObjectMapping(kind=kind, entra_id=r[0], scim_id=r[1], state=orjson.loads(r[2]), updated_at=r[3]) for r in rows
        ]

    # memberships ---------------------------------------------------------------------------------
    async def update_members(self, group_id: str, added: Sequence[str], removed: Sequence[str]) -> None:
        async def job(c: Any) -> None:
            await c.execute("DELETE FROM members WHERE group_id = $1 AND user_id = ANY($2::text[])", group_id, list(removed))
            await c.execute(
                "INSERT INTO members (group_id, user_id) SELECT $1, u FROM unnest($2::text[]) AS u ON CONFLICT DO NOTHING",
                group_id, list(added),
            )

        await self._transaction(job)

    async def replace_members(self, group_id: str, members: Sequence[str]) -> None:
        async def job(c: Any) -> None:
            await c.execute("DELETE FROM members WHERE group_id = $1", group_id)
            await c.execute(
                "INSERT INTO members (group_id, user_id) SELECT $1, u FROM unnest($2::text[]) AS u ON CONFLICT DO NOTHING",
                group_id, list(members),
            )

        await self._transaction(job)

    async def members_of(self, group_id: str) -> set[str]:
        rows = await self._run(lambda c: c.fetch("SELECT user_id FROM members WHERE group_id = $1", group_id))
        return {r[0] for r in rows}

    async def groups_of(self, user_id: str) -> set[str]:
        rows = await self._run(lambda c: c.fetch("SELECT group_id FROM members WHERE user_id = $1", user_id))
        return {r[0] for r in rows}

    async def member_users(self) -> set[str]:
        rows = await self._run(lambda c: c.fetch("SELECT DISTINCT user_id FROM members"))
        return {r[0] for r in rows}

    # dead letters --------------------------------------------------------------------------------
    async def add_dead_letter(
        self, kind: str, object_id: str, change: dict[str, Any], error: str, attempts: list[dict[str, Any]]
    ) -> int:
        new_id = await self._run(
            lambda c: c.fetchval(
                "INSERT INTO dead_letters (kind, object_id, change, error, attempts, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                kind, object_id, orjson.dumps(change), error, orjson.dumps(attempts), time.time(),
            )
        )
        return int(new_id)

    async def dead_letters(self) -> list[DeadLetter]:
        rows = await self._run(
            lambda c: c.fetch("SELECT id, kind, object_id, change, error, attempts, created_at FROM dead_letters ORDER BY id")
        )
        return [
            DeadLetter(id=r[0], kind=r[1], object_id=r[2], change=orjson.loads(r[3]), error=r[4],
                       attempts=orjson.loads(r[5]), created_at=r[6])
            for r in rows
        ]

    async def delete_dead_letter(self, dead_letter_id: int) -> None:
        await self._run(lambda c: c.execute("DELETE FROM dead_letters WHERE id = $1", dead_letter_id))

    # applied changes -----------------------------------------------------------------------------
    async def record_change(self, change: AppliedChange) -> None:
        ch = change

        async def job(c: Any) -> None:
            last = int(await c.fetchval(
                "INSERT INTO changes (at, entra_id, what, why, who) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                ch.at, ch.entra_id, ch.what, ch.why, ch.who,
            ))
            if last % 100 == 0:
                await c.execute("DELETE FROM changes WHERE id <= $1", last - _KEEP_CHANGES)

        await self._transaction(job)

    async def recent_changes(self, limit: int = 50) -> list[AppliedChange]:
        rows = await self._run(
            lambda c: c.fetch("SELECT at, entra_id, what, why, who FROM changes ORDER BY id DESC LIMIT $1", limit)
        )
        return [AppliedChange(*r) for r in rows]


async def _migrate(conn: Any) -> None:
    """Bring the schema to the newest version, one process at a time (advisory lock, released at commit)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the database schema is at version {current}, newer than this reactor knows ({len(MIGRATIONS)}):"
                " run the newer reactor, or a database of this version"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            await conn.execute(MIGRATIONS[version - 1])
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
