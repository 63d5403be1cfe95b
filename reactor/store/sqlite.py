"""The embedded store: the schema and the queries of :class:`SQLiteStore`, on the group-commit
writer of :mod:`reactor.store.sqlite_writer` (one thread, WAL, one ``fsync`` per batch of callers)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal

import orjson

from reactor.store.base import (
    AppliedChange,
    AuditRow,
    DeadLetter,
    Fence,
    JournalEntry,
    ObjectMapping,
    SubscriptionRecord,
    audit_values,
    change_of,
)
from reactor.store.sqlite_coordination import COORDINATION_SCHEMA, SQLiteCoordination, upgrade_journal

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
DROP TABLE IF EXISTS changes;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    entra_id TEXT NOT NULL,
    upn TEXT NOT NULL,
    upn_key TEXT NOT NULL,
    mail TEXT NOT NULL,
    mail_key TEXT NOT NULL,
    op TEXT NOT NULL,
    operation TEXT NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT NOT NULL,
    journal_seqs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_entra_id ON audit (entra_id);
CREATE INDEX IF NOT EXISTS audit_by_upn ON audit (upn_key);
CREATE INDEX IF NOT EXISTS audit_by_mail ON audit (mail_key);
CREATE INDEX IF NOT EXISTS audit_by_at ON audit (at);
"""

_AUDIT_COLUMNS = "at, entra_id, upn, op, operation, cause, reason, outcome, error, journal_seqs, mail"


class SQLiteStore(SQLiteCoordination):
    """A :class:`~reactor.store.base.Store` on one SQLite file (or ``:memory:``)."""

    schema = SCHEMA + COORDINATION_SCHEMA

    def upgrade(self, conn: sqlite3.Connection) -> None:
        upgrade_journal(conn)

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
        # Units of one notification each leave runs of consecutive numbers: one range delete per run.
        # Coalesced units (many notifications of a user, interleaved with others') leave scattered
        # numbers: those go in lists of up to DELETE_CHUNK, one statement each instead of one per
        # number (each statement the writer steps releases and takes back the GIL).
        ranges = _runs(seqs)
        spans = [r for r in ranges if r[0] != r[1]]
        single = [r[0] for r in ranges if r[0] == r[1]]

        def job(c: sqlite3.Connection) -> None:
            if spans:
                c.executemany("DELETE FROM journal WHERE seq BETWEEN ? AND ?", spans)
            for i in range(0, len(single), DELETE_CHUNK):
                chunk = single[i : i + DELETE_CHUNK]
                c.execute(f"DELETE FROM journal WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

        await self._call(job)

    async def backlog(self) -> tuple[int, float | None]:
        def job(c: sqlite3.Connection) -> tuple[int, float | None]:
            n, oldest = c.execute("SELECT COUNT(*), MIN(received_at) FROM journal").fetchone()
            return int(n), (float(oldest) if oldest is not None else None)

        return await self._call(job)

    # subscriptions -------------------------------------------------------------------------------
    async def save_subscription(self, record: SubscriptionRecord, fence: Fence | None = None) -> None:
        r = record

        def job(c: sqlite3.Connection) -> None:
            self._check_fence(c, fence)
            c.execute(
                "INSERT OR REPLACE INTO subscriptions (id, resource, change_type, notification_url, lifecycle_url,"
                " client_state, expires_at, created_at, last_renewed_at, last_reauthorized_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.resource, r.change_type, r.notification_url, r.lifecycle_url, r.client_state,
                 r.expires_at, r.created_at, r.last_renewed_at, r.last_reauthorized_at),
            )

        await self._call(job)

    async def delete_subscription(self, subscription_id: str, fence: Fence | None = None) -> None:
        def job(c: sqlite3.Connection) -> None:
            self._check_fence(c, fence)
            c.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))

        await self._call(job)

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

        return await self._read(job)

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

        return await self._read(job)

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

        return await self._read(job)

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

        return await self._read(job)

    async def groups_of(self, user_id: str) -> set[str]:
        def job(c: sqlite3.Connection) -> set[str]:
            return {r[0] for r in c.execute("SELECT group_id FROM members WHERE user_id = ?", (user_id,))}

        return await self._read(job)

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

    # audit -------------------------------------------------------------------------------------
    async def record_audit(self, rows: Sequence[AuditRow]) -> None:
        if not rows:
            return
        values = [(*audit_values(r), orjson.dumps(list(r.journal_seqs))) for r in rows]
        await self._call(lambda c: c.executemany(
            "INSERT INTO audit (at, entra_id, upn, upn_key, mail, mail_key, op, operation, cause, reason, outcome,"
            " error, journal_seqs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        ))

    async def audit(self, user: str | None = None, since: float | None = None, limit: int = 10_000) -> list[AuditRow]:
        where: list[str] = ["at >= ?"]
        args: list[float | str] = [since if since is not None else float("-inf")]
        if user is not None:
            where.append("(entra_id = ? OR upn_key = ? OR mail_key = ?)")
            args += [user, user.lower(), user.lower()]

        def job(c: sqlite3.Connection) -> list[AuditRow]:
            cur = c.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT ?",
                (*args, limit),
            )
            return [_audit_row(r) for r in reversed(cur.fetchall())]

        return await self._call(job)

    async def prune_audit(self, before: float) -> int:
        return await self._call(lambda c: c.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount)

    async def recent_changes(self, limit: int = 50) -> list[AppliedChange]:
        def job(c: sqlite3.Connection) -> list[AppliedChange]:
            cur = c.execute(
                f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE outcome <> 'failed' ORDER BY at DESC, id DESC LIMIT ?", (limit,)
            )
            return [change_of(_audit_row(r)) for r in cur.fetchall()]

        return await self._call(job)


def _audit_row(r: Sequence[Any]) -> AuditRow:
    return AuditRow(at=r[0], entra_id=r[1], upn=r[2], op=r[3], operation=r[4], cause=r[5], reason=r[6], outcome=r[7],
                    error=r[8], journal_seqs=tuple(orjson.loads(r[9])), mail=r[10])


DELETE_CHUNK = 500
"""The most journal numbers one ``DELETE … IN (…)`` of :meth:`SQLiteStore.mark_done` carries."""


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` covering exactly the given numbers, one pair per consecutive run."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
