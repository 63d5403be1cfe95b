"""The embedded store: SQLite in WAL mode, one writer thread, group commit.

Every operation is a job run on a single thread that owns the connection. The thread takes all jobs
that are waiting, runs them in one transaction (each in its own savepoint, so one failing job does
not sink the others), commits once, then answers every caller. Concurrent webhook requests therefore
share one transaction and one ``fsync``: the intake is fast and durable at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from reactor.errors import StoreError
from reactor.metrics import JOURNAL_WRITE_SECONDS
from reactor.store.base import (
    AppliedChange,
    DeadLetter,
    JournalEntry,
    JournalItem,
    ObjectMapping,
    SubscriptionRecord,
)

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL DEFAULT '',
    change_type TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    change_type TEXT NOT NULL,
    notification_url TEXT NOT NULL,
    lifecycle_url TEXT NOT NULL,
    client_state TEXT NOT NULL,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    last_renewed_at REAL NOT NULL DEFAULT 0,
    last_reauthorized_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mappings (
    kind TEXT NOT NULL,
    entra_id TEXT NOT NULL,
    scim_id TEXT NOT NULL,
    state BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, entra_id)
);
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    change BLOB NOT NULL,
    error TEXT NOT NULL,
    attempts BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    entra_id TEXT NOT NULL,
    what TEXT NOT NULL,
    why TEXT NOT NULL,
    who TEXT NOT NULL DEFAULT ''
);
"""

_KEEP_CHANGES = 1000
_CHECKPOINT_EVERY = 2000


class SQLiteStore:
    """A :class:`~reactor.store.base.Store` on one SQLite file (or ``:memory:``)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000, durable: bool = True) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.durable = durable
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._appends: list[tuple[list[Any], int, asyncio.Future[list[int]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._thread is not None:
            return
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"store directory does not exist: {parent}")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="reactor-store", daemon=True)
        self._thread.start()
        await self._loop.run_in_executor(None, self._opened.wait)
        if self._open_error is not None:
            self._thread = None
            raise StoreError(f"cannot open store {self.path}: {self._open_error}")

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            _private_files(self.path)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_ms / 1000,
            cached_statements=_INSERT_CHUNK + 128,  # one INSERT per batch size, plus the rest
        )
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"SQLite refused WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=" + ("FULL" if self.durable else "NORMAL"))
        # Checkpoints run when the writer is idle (see _run), not inside a commit that callers wait for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(SCHEMA)
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        commits = 0
        try:
            while True:
                try:
                    first = self._jobs.get(timeout=0.2 if commits else None)
                except queue.Empty:
                    self._checkpoint(conn)
                    commits = 0
                    continue
                if first is None:
                    return
                batch = [first]
                stop = False
                while True:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
                commits += 1
                if commits >= _CHECKPOINT_EVERY:
                    # Never idle: keep the WAL bounded anyway.
                    self._checkpoint(conn)
                    commits = 0
                if stop:
                    return
        finally:
            if commits:
                self._checkpoint(conn)
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        if self.path == ":memory:":
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # tried again at the next idle moment

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        appends = [fn for fn, _, _ in batch if isinstance(fn, _JournalRows)]
        try:
            if len(appends) == len(batch) and sum(a.count for a in appends) <= _INSERT_CHUNK:
                # The hot path: nothing but journal appends. One INSERT in autocommit mode is its own
                # transaction: insert, commit and sync in a single sqlite3_step, so this thread takes
                # the GIL back from the event loop once per group commit instead of once per statement.
                results = [(True, seqs) for seqs in self._append_alone(conn, appends)]
            else:
                results = self._transaction(conn, batch)
            if appends:
                # One observation per group commit: the latency every caller in the batch waited for.
                JOURNAL_WRITE_SECONDS.observe(time.perf_counter() - started)
        except Exception as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            err = StoreError(f"store write failed: {exc}")
            results = [(False, err)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for (_, loop, fut), (ok, value) in zip(batch, results, strict=True):
            if ok:
                by_loop.setdefault(loop, []).append((fut, value, None))
            else:
                if isinstance(value, sqlite3.Error):
                    value = StoreError(f"store operation failed: {value}")
                by_loop.setdefault(loop, []).append((fut, None, value))
        for loop, outcomes in by_loop.items():
            # One wake-up of the event loop per batch, not one per caller.
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve_all, outcomes)

    @staticmethod
    def _append_alone(conn: sqlite3.Connection, appends: list[_JournalRows]) -> list[list[int]]:
        """Insert every row of ``appends`` with one statement outside any transaction (at most
        ``_INSERT_CHUNK`` rows); the sequence numbers of each append, in order."""
        params = appends[0].params if len(appends) == 1 else [v for a in appends for v in a.params]
        total = sum(a.count for a in appends)
        last = conn.execute(_insert_sql(total), params).lastrowid
        if last is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
            raise StoreError("SQLite did not report the inserted sequence numbers")
        seq = last - total + 1
        out: list[list[int]] = []
        for a in appends:
            out.append(list(range(seq, seq + a.count)))
            seq += a.count
        return out

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Every job of ``batch`` in one transaction; each job in its own savepoint, so one failing job
        fails alone."""
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        appended = self._append_all(conn, [fn for fn, _, _ in batch])
        for i, (fn, _, _) in enumerate(batch):
            if i in appended:
                results.append((True, appended[i]))
                continue
            conn.execute(f"SAVEPOINT j{i}")
            try:
                results.append((True, fn(conn)))
                conn.execute(f"RELEASE j{i}")
            except Exception as exc:
                conn.execute(f"ROLLBACK TO j{i}")
                conn.execute(f"RELEASE j{i}")
                results.append((False, exc))
        conn.execute("COMMIT")
        return results

    @staticmethod
    def _append_all(conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]) -> dict[int, list[int]]:
        """Insert the rows of every journal append of a batch (inside the batch's transaction).

        One writer and AUTOINCREMENT make the new sequence numbers consecutive, ending at
        ``last_insert_rowid()``, so each caller gets its own numbers back.
        """
        params: list[Any] = []
        spans: dict[int, tuple[int, int]] = {}
        rows = 0
        for i, fn in enumerate(fns):
            if isinstance(fn, _JournalRows):
                spans[i] = (rows, fn.count)
                rows += fn.count
                params += fn.params
        if not rows:
            return {}
        # Multi-row INSERTs instead of one sqlite3_step per row: each step is a round of the GIL
        # between this thread and the event loop, which costs more than the insert itself.
        for start in range(0, rows, _INSERT_CHUNK):
            n = min(_INSERT_CHUNK, rows - start)
            conn.execute(_insert_sql(n), params[start * _COLUMNS : (start + n) * _COLUMNS])
        last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - rows + 1
        return {i: list(range(first + start, first + start + n)) for i, (start, n) in spans.items()}

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, fut))
        return await fut

    async def ping(self) -> None:
        await self._call(lambda c: c.execute("SELECT 1").fetchone())

    # journal -------------------------------------------------------------------------------------
    def append(self, items: Sequence[JournalItem]) -> asyncio.Future[list[int]]:
        """Journal ``items``; the appends of one event-loop iteration go to the writer as one job.
        Call it from the event loop that opened the store.

        A plain method returning the future (not a coroutine): one frame less on the intake's hot
        path. The rows are flattened into INSERT parameters here, so that the writer thread holds
        the GIL for as little as possible."""
        loop = self._loop
        if self._thread is None or loop is None:
            raise StoreError("store is not open")
        # The loop that opened the store (asyncio.get_running_loop() costs a getpid() system call
        # on Python 3.11, once per request here). Awaiting from another loop fails loudly.
        fut: asyncio.Future[list[int]] = loop.create_future()
        params: list[Any] = []
        for i in items:
            params += (i.kind, i.object_id, i.subscription_id, i.change_type, i.received_at, orjson.dumps(i.payload))
        self._appends.append((params, len(items), fut))
        if len(self._appends) == 1:
            loop.call_soon(self._submit_appends, loop)
        return fut

    def _submit_appends(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting, self._appends = self._appends, []
        params: list[Any] = []
        for p, _, _ in waiting:
            params += p
        done: asyncio.Future[list[int]] = loop.create_future()

        def share(f: asyncio.Future[list[int]]) -> None:
            error = None if f.cancelled() else f.exception()
            seqs = f.result() if error is None and not f.cancelled() else []
            start = 0
            for _, count, fut in waiting:
                if fut.done():
                    pass
                elif f.cancelled():
                    fut.cancel()
                elif error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(seqs[start : start + count])
                start += count

        done.add_done_callback(share)
        self._jobs.put((_JournalRows(params, sum(count for _, count, _ in waiting)), loop, done))

    async def pending(self, after_seq: int = 0, limit: int = 10_000) -> list[JournalEntry]:
        def job(c: sqlite3.Connection) -> list[JournalEntry]:
            cur = c.execute(
                "SELECT seq, kind, object_id, subscription_id, change_type, received_at, payload FROM journal"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            return [
                JournalEntry(
                    seq=r[0], kind=r[1], object_id=r[2], subscription_id=r[3], change_type=r[4],
                    received_at=r[5], payload=orjson.loads(r[6]),
                )
                for r in cur.fetchall()
            ]

        return await self._call(job)

    async def mark_done(self, seqs: Sequence[int]) -> None:
        # Done entries are mostly consecutive: one range delete per run of consecutive numbers.
        ranges = _runs(seqs)
        await self._call(lambda c: c.executemany("DELETE FROM journal WHERE seq BETWEEN ? AND ?", ranges))

    async def backlog(self) -> tuple[int, float | None]:
        def job(c: sqlite3.Connection) -> tuple[int, float | None]:
            n, oldest = c.execute("SELECT COUNT(*), MIN(received_at) FROM journal").fetchone()
            return int(n), (float(oldest) if oldest is not None else None)

        return await self._call(job)

    # subscriptions -------------------------------------------------------------------------------
    async def save_subscription(self, record: SubscriptionRecord) -> None:
        r = record
        await self._call(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO subscriptions (id, resource, change_type, notification_url, lifecycle_url,"
                " client_state, expires_at, created_at, last_renewed_at, last_reauthorized_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.resource, r.change_type, r.notification_url, r.lifecycle_url, r.client_state,
                 r.expires_at, r.created_at, r.last_renewed_at, r.last_reauthorized_at),
            )
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._call(lambda c: c.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)))

    async def subscriptions(self) -> list[SubscriptionRecord]:
        def job(c: sqlite3.Connection) -> list[SubscriptionRecord]:
            cur = c.execute(
                "SELECT id, resource, change_type, notification_url, lifecycle_url, client_state, expires_at,"
                " created_at, last_renewed_at, last_reauthorized_at FROM subscriptions ORDER BY resource, id"
            )
            return [SubscriptionRecord(*row) for row in cur.fetchall()]

        return await self._call(job)

    # meta ----------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        def job(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._call(job)

    async def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            await self._call(lambda c: c.execute("DELETE FROM meta WHERE key = ?", (key,)))
        else:
            await self._call(lambda c: c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)))

    # mappings ------------------------------------------------------------------------------------
    async def get_mapping(self, kind: Literal["user", "group"], entra_id: str) -> ObjectMapping | None:
        def job(c: sqlite3.Connection) -> ObjectMapping | None:
            row = c.execute(
                "SELECT scim_id, state, updated_at FROM mappings WHERE kind = ? AND entra_id = ?", (kind, entra_id)
            ).fetchone()
            if row is None:
                return None
            return ObjectMapping(kind=kind, entra_id=entra_id, scim_id=row[0], state=orjson.loads(row[1]), updated_at=row[2])

        return await self._call(job)

    async def put_mapping(self, mapping: ObjectMapping) -> None:
        m = mapping
        await self._call(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO mappings (kind, entra_id, scim_id, state, updated_at) VALUES (?, ?, ?, ?, ?)",
                (m.kind, m.entra_id, m.scim_id, orjson.dumps(m.state), m.updated_at or time.time()),
            )
        )

    async def delete_mapping(self, kind: Literal["user", "group"], entra_id: str) -> None:
        await self._call(lambda c: c.execute("DELETE FROM mappings WHERE kind = ? AND entra_id = ?", (kind, entra_id)))

    async def mappings(self, kind: Literal["user", "group"]) -> list[ObjectMapping]:
        def job(c: sqlite3.Connection) -> list[ObjectMapping]:
            cur = c.execute("SELECT entra_id, scim_id, state, updated_at FROM mappings WHERE kind = ?", (kind,))
            return [
                ObjectMapping(kind=kind, entra_id=r[0], scim_id=r[1], state=orjson.loads(r[2]), updated_at=r[3])
                for r in cur.fetchall()
            ]

        return await self._call(job)

    # memberships ---------------------------------------------------------------------------------
    async def update_members(self, group_id: str, added: Sequence[str], removed: Sequence[str]) -> None:
        add_rows = [(group_id, u) for u in added]
        remove_rows = [(group_id, u) for u in removed]

        def job(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM members WHERE group_id = ? AND user_id = ?", remove_rows)
            c.executemany("INSERT OR IGNORE INTO members (group_id, user_id) VALUES (?, ?)", add_rows)

        await self._call(job)

    async def replace_members(self, group_id: str, members: Sequence[str]) -> None:
        rows = [(group_id, u) for u in members]

        def job(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM members WHERE group_id = ?", (group_id,))
            c.executemany("INSERT OR IGNORE INTO members (group_id, user_id) VALUES (?, ?)", rows)

        await self._call(job)

    async def members_of(self, group_id: str) -> set[str]:
        def job(c: sqlite3.Connection) -> set[str]:
            return {r[0] for r in c.execute("SELECT user_id FROM members WHERE group_id = ?", (group_id,))}

        return await self._call(job)

    async def groups_of(self, user_id: str) -> set[str]:
        def job(c: sqlite3.Connection) -> set[str]:
            return {r[0] for r in c.execute("SELECT group_id FROM members WHERE user_id = ?", (user_id,))}

        return await self._call(job)

    async def member_users(self) -> set[str]:
        def job(c: sqlite3.Connection) -> set[str]:
            return {r[0] for r in c.execute("SELECT DISTINCT user_id FROM members")}

        return await self._call(job)

    # dead letters --------------------------------------------------------------------------------
    async def add_dead_letter(
        self, kind: str, object_id: str, change: dict[str, Any], error: str, attempts: list[dict[str, Any]]
    ) -> int:
        def job(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO dead_letters (kind, object_id, change, error, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, object_id, orjson.dumps(change), error, orjson.dumps(attempts), time.time()),
            )
            return int(cur.lastrowid or 0)

        return await self._call(job)

    async def dead_letters(self) -> list[DeadLetter]:
        def job(c: sqlite3.Connection) -> list[DeadLetter]:
            cur = c.execute("SELECT id, kind, object_id, change, error, attempts, created_at FROM dead_letters ORDER BY id")
            return [
                DeadLetter(id=r[0], kind=r[1], object_id=r[2], change=orjson.loads(r[3]), error=r[4],
                           attempts=orjson.loads(r[5]), created_at=r[6])
                for r in cur.fetchall()
            ]

        return await self._call(job)

    async def delete_dead_letter(self, dead_letter_id: int) -> None:
        await self._call(lambda c: c.execute("DELETE FROM dead_letters WHERE id = ?", (dead_letter_id,)))

    # applied changes -----------------------------------------------------------------------------
    async def record_change(self, change: AppliedChange) -> None:
        ch = change

        def job(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "INSERT INTO changes (at, entra_id, what, why, who) VALUES (?, ?, ?, ?, ?)",
                (ch.at, ch.entra_id, ch.what, ch.why, ch.who),
            )
            last = int(cur.lastrowid or 0)
            if last % 100 == 0:
                c.execute("DELETE FROM changes WHERE id <= ?", (last - _KEEP_CHANGES,))

        await self._call(job)

    async def recent_changes(self, limit: int = 50) -> list[AppliedChange]:
        def job(c: sqlite3.Connection) -> list[AppliedChange]:
            cur = c.execute("SELECT at, entra_id, what, why, who FROM changes ORDER BY id DESC LIMIT ?", (limit,))
            return [AppliedChange(*row) for row in cur.fetchall()]

        return await self._call(job)


_INSERT_CHUNK = 256  # rows per INSERT statement (6 parameters each, far below SQLite's limit)
_COLUMNS = 6


class _JournalRows:
    """A writer job: the journal rows of one event-loop iteration, flattened into INSERT parameters
    (kind, object_id, subscription_id, change_type, received_at, payload per row). The writer inserts
    these itself (see ``_run_batch``); calling the job is a mistake."""

    __slots__ = ("count", "params")

    def __init__(self, params: list[Any], count: int) -> None:
        self.params = params
        self.count = count

    def __call__(self, conn: sqlite3.Connection) -> list[int]:
        raise AssertionError("journal rows are inserted by the writer's batch, not called")


def _private_files(path: str) -> None:
    """Create the database readable by the owner only (it holds clientStates and people's names and
    addresses; SQLite gives the WAL and shared-memory files the database's mode), and tighten
    existing files."""
    for name in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


@functools.lru_cache(maxsize=_INSERT_CHUNK)
def _insert_sql(rows: int) -> str:
    return (
        "INSERT INTO journal (kind, object_id, subscription_id, change_type, received_at, payload) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    )


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` covering exactly the given numbers, one pair per consecutive run."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def _resolve_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in outcomes:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
