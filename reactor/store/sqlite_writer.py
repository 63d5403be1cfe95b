"""The group-commit writer under the SQLite store: one thread, one connection, WAL.

Every operation is a job run on a single thread that owns the connection. The thread takes all jobs
that are waiting, runs them in one transaction (each in its own savepoint, so one failing job does
not sink the others), commits once, then answers every caller. Concurrent webhook requests therefore
share one transaction and one ``fsync``: the intake is fast and durable at once. Journal appends of
one event-loop iteration are flattened into multi-row INSERTs.

The queries are in :mod:`reactor.store.sqlite`.
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
from typing import Any, TypeVar

import orjson

from reactor.errors import StoreError
from reactor.metrics import JOURNAL_WRITE_SECONDS
from reactor.store.base import JournalItem, new_replica_id

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_CHECKPOINT_EVERY = 2000


class SQLiteWriter:
    """One SQLite file (or ``:memory:``) in WAL mode, owned by one writer thread that runs every job
    with group commit. :class:`~reactor.store.sqlite.SQLiteStore` puts the queries on top."""

    schema = ""
    """The DDL run at every open (``CREATE … IF NOT EXISTS``); set by the subclass."""

    shared = False
    """One process per SQLite file: a single node (a restart takes over everything at once)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000, durable: bool = True, replica_id: str = "") -> None:
        self.path = path
        self.replica_id = replica_id or new_replica_id()
        self.busy_timeout_ms = busy_timeout_ms
        self.durable = durable
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._appends: list[tuple[list[Any], int, asyncio.Future[list[int]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None

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
        if self.path != ":memory:":
            self._reader = self._connect_reader()

    def _connect_reader(self) -> sqlite3.Connection:
        """The read connection of :meth:`_read`, used on the event loop's thread only (after the writer
        made or migrated the schema). It may not write, and it waits for no lock: a read that meets
        one goes to the writer's queue instead."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA query_only=1")
        return conn

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
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
        conn.executescript(self.schema)
        self.upgrade(conn)
        return conn

    def upgrade(self, conn: sqlite3.Connection) -> None:
        """Bring a file made by an older version up to :attr:`schema` (after it ran); the subclass says how."""

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
        appends = [job for job in batch if isinstance(job[0], _JournalRows)]
        rows = sum(fn.count for fn, _, _ in appends if isinstance(fn, _JournalRows))
        if appends and len(appends) < len(batch) and rows <= _INSERT_CHUNK:
            # The intake's appends go first, on their own: one INSERT in autocommit mode, answered at
            # once. Inside the transaction of the batch's other writes (the engine's state, audit and
            # done-deletes) every statement is a GIL hand-off with the busy event loop, and the
            # acknowledgements waited for all of them. Two commits instead of one for such a batch.
            self._run_jobs(conn, appends)
            self._run_jobs(conn, [job for job in batch if not isinstance(job[0], _JournalRows)])
        else:
            self._run_jobs(conn, batch)

    def _run_jobs(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
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
                results.append((True, _plain(fn(conn))))
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

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small read (a lookup by key: microseconds) at once on the event loop's thread, with a
        connection of its own, instead of queueing it behind the writer's commits.

        In WAL mode a reader sees the last committed state and neither waits for the writer nor holds
        it up, and a caller's earlier write has committed before its future resolved, so the read sees
        it. The engine makes several such lookups per unit; on the writer's queue each was a round of
        the thread and a wake-up of the loop, and the intake's journal appends waited behind them.
        ``:memory:`` (one connection only) and a read that meets a lock (``SQLITE_BUSY``) run on the
        writer instead. Call it from the loop that opened the store."""
        reader = self._reader
        if reader is None:
            return await self._call(fn)
        try:
            return _plain(fn(reader))  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            # The primary result code (SQLITE_BUSY_SNAPSHOT and the like share the low byte).
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StoreError(f"store operation failed: {exc}") from None
        return await self._call(fn)

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
        owner = self.replica_id
        for i in items:
            params += (i.kind, i.object_id, i.subscription_id, i.change_type, i.received_at, orjson.dumps(i.payload), owner)
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


_INSERT_CHUNK = 256  # rows per INSERT statement (7 parameters each, far below SQLite's limit)
_COLUMNS = 7


class _JournalRows:
    """A writer job: the journal rows of one event-loop iteration, flattened into INSERT parameters
    (kind, object_id, subscription_id, change_type, received_at, payload, owner per row). The writer inserts
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
        "INSERT INTO journal (kind, object_id, subscription_id, change_type, received_at, payload, owner) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


def _resolve_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in outcomes:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)


def _plain(value: Any) -> Any:
    """A job's result as it may leave the writer thread: never a cursor. A cursor that reached the
    event loop was finalised there when it was collected, resetting its statement, which the statement
    cache may have handed to this thread's next job meanwhile: one connection used from two threads at
    once (SQLite answered "bad parameter or other API misuse" to an audit insert under load)."""
    if isinstance(value, sqlite3.Cursor):
        value.close()
        return None
    return value
