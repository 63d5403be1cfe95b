"""The :class:`~reactor.store.base.Coordination` queries on SQLite: the same tables and rules as on
PostgreSQL (the contract tests hold both to them), on one file that one process uses. Times are this
machine's clock; every job runs in the writer's transaction, so each is atomic."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from typing import Any

import orjson

from reactor.errors import LeadershipLost
from reactor.store.base import ClaimKey, Fence, JournalEntry, Leadership, ReplicaInfo
from reactor.store.sqlite_writer import SQLiteWriter

COORDINATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    info BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE INDEX IF NOT EXISTS claims_by_holder ON claims (holder);
INSERT OR IGNORE INTO claims (kind, object_id, holder, expires_at) VALUES ('*', '*', '', 0);
"""
ALL = "kind = '*' AND object_id = '*'"
"""The row that holds every object at once (``claim_all``), free while its holder is ``''``."""
RELEASE_ALL = f"UPDATE claims SET holder = '', expires_at = 0 WHERE {ALL} AND holder = ?"
"""This replica (?) gives up the hold on every object."""

LEADER = "leader"
FORGET_DEAD_AFTER = 86_400.0
_ENTRY_COLUMNS = "seq, kind, object_id, subscription_id, change_type, received_at, payload"


def upgrade_journal(conn: sqlite3.Connection) -> None:
    """Files made before replicas had no journal owner: add it (existing entries belong to nobody)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(journal)")}
    if "owner" not in columns:
        conn.execute("ALTER TABLE journal ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    conn.execute("CREATE INDEX IF NOT EXISTS journal_by_owner ON journal (owner)")


class SQLiteCoordination(SQLiteWriter):
    """Heartbeats, the leader lease, claims and journal ownership on SQLite."""

    clock = staticmethod(time.time)

    async def heartbeat(self, info: dict[str, Any], ttl: float) -> bool:
        me = self.replica_id

        def job(c: sqlite3.Connection) -> bool:
            now = self.clock()
            row = c.execute("SELECT expires_at FROM replicas WHERE id = ?", (me,)).fetchone()
            c.execute(
                "INSERT INTO replicas (id, started_at, expires_at, info) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, info = excluded.info",
                (me, now, now + ttl, orjson.dumps(info)),
            )
            c.execute("UPDATE claims SET expires_at = ? WHERE holder = ?", (now + ttl, me))
            c.execute("DELETE FROM replicas WHERE expires_at < ?", (now - FORGET_DEAD_AFTER,))
            return row is None or float(row[0]) > now

        return await self._call(job)

    async def replicas(self) -> list[ReplicaInfo]:
        def job(c: sqlite3.Connection) -> list[ReplicaInfo]:
            rows = c.execute(
                "SELECT id, started_at, expires_at, info FROM replicas WHERE expires_at > ? ORDER BY started_at, id",
                (self.clock(),),
            ).fetchall()
            return [ReplicaInfo(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]

        return await self._call(job)

    async def lead(self, ttl: float) -> Fence | None:
        me = self.replica_id

        def job(c: sqlite3.Connection) -> Fence | None:
            now = self.clock()
            row = c.execute(
                "INSERT INTO leases (name, holder, epoch, expires_at) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,"
                " epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?"
                " THEN leases.epoch ELSE leases.epoch + 1 END"
                " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?"
                " RETURNING epoch",
                (LEADER, me, now + ttl, now, now),
            ).fetchone()
            return None if row is None else Fence(me, int(row[0]))

        return await self._call(job)

    async def leadership(self) -> Leadership | None:
        def job(c: sqlite3.Connection) -> Leadership | None:
            row = c.execute(
                "SELECT holder, epoch, expires_at FROM leases WHERE name = ? AND expires_at > ?", (LEADER, self.clock())
            ).fetchone()
            return None if row is None else Leadership(row[0], int(row[1]), float(row[2]))

        return await self._call(job)

    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return []
        me = self.replica_id

        def job(c: sqlite3.Connection) -> list[ClaimKey]:
            now = self.clock()
            held: list[ClaimKey] = []
            if self._all_held_by_another(c, now):
                return held
            for kind, oid in unique:
                row = c.execute(
                    "INSERT INTO claims (kind, object_id, holder, expires_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (kind, object_id) DO UPDATE SET holder = excluded.holder,"
                    " expires_at = excluded.expires_at WHERE claims.holder = excluded.holder OR claims.expires_at <= ?"
                    " RETURNING kind",
                    (kind, oid, me, now + ttl, now),
                ).fetchone()
                if row is not None:
                    held.append((kind, oid))
            return held

        return await self._call(job)

    async def release(self, keys: Sequence[ClaimKey]) -> None:
        if not keys:
            return
        me = self.replica_id
        await self._call(lambda c: c.executemany(
            "DELETE FROM claims WHERE kind = ? AND object_id = ? AND holder = ?", [(k, o, me) for k, o in keys]
        ))

    def _all_held_by_another(self, c: sqlite3.Connection, now: float) -> bool:
        row = c.execute(f"SELECT holder, expires_at FROM claims WHERE {ALL}").fetchone()
        return row is not None and row[0] not in ("", self.replica_id) and float(row[1]) > now

    async def claim_all(self, ttl: float) -> bool:
        me = self.replica_id

        def job(c: sqlite3.Connection) -> bool:
            now = self.clock()
            if self._all_held_by_another(c, now):
                return False
            if c.execute(
                f"SELECT 1 FROM claims WHERE NOT ({ALL}) AND holder <> ? AND expires_at > ? LIMIT 1", (me, now)
            ).fetchone():
                return False
            c.execute(
                "INSERT INTO claims (kind, object_id, holder, expires_at) VALUES ('*', '*', ?, ?)"
                " ON CONFLICT (kind, object_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                (me, now + ttl),
            )
            return True

        return await self._call(job)

    async def release_all(self) -> None:
        me = self.replica_id
        await self._call(lambda c: c.execute(RELEASE_ALL, (me,)))

    async def adopt(
        self, *, kinds: Collection[str] | None = None, everything: bool = False, limit: int = 1000
    ) -> list[JournalEntry]:
        me = self.replica_id

        def job(c: sqlite3.Connection) -> list[JournalEntry]:
            where = ["1"] if everything else [
                "j.owner <> ?", "NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = j.owner AND r.expires_at > ?)"
            ]
            args: list[Any] = [] if everything else [me, self.clock()]
            if kinds is not None:
                where.append(f"j.kind IN ({', '.join('?' * len(kinds))})")
                args += list(kinds)
            rows = c.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM journal j WHERE {' AND '.join(where)} ORDER BY j.seq LIMIT ?",
                (*args, limit),
            ).fetchall()
            c.executemany("UPDATE journal SET owner = ? WHERE seq = ?", [(me, r[0]) for r in rows])
            return [
                JournalEntry(seq=r[0], kind=r[1], object_id=r[2], subscription_id=r[3], change_type=r[4],
                             received_at=r[5], payload=orjson.loads(r[6]))
                for r in rows
            ]

        return await self._call(job)

    async def hand_off(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        me = self.replica_id
        await self._call(lambda c: c.executemany(
            "UPDATE journal SET owner = '' WHERE owner = ? AND seq = ?", [(me, s) for s in seqs]
        ))

    async def leave(self) -> None:
        me = self.replica_id

        def job(c: sqlite3.Connection) -> None:
            c.execute(RELEASE_ALL, (me,))
            c.execute("DELETE FROM claims WHERE holder = ?", (me,))
            c.execute("UPDATE leases SET expires_at = ? WHERE holder = ?", (self.clock() - 1, me))
            c.execute("UPDATE journal SET owner = '' WHERE owner = ?", (me,))
            c.execute("DELETE FROM replicas WHERE id = ?", (me,))

        await self._call(job)

    def _check_fence(self, c: sqlite3.Connection, fence: Fence | None) -> None:
        """Inside a write's job (the writer's transaction): refuse it unless ``fence`` still leads."""
        if fence is None:
            return
        held = c.execute(
            "SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ? AND expires_at > ?",
            (LEADER, fence.holder, fence.epoch, self.clock()),
        ).fetchone()
        if held is None:
            raise LeadershipLost(f"replica {fence.holder} no longer leads (epoch {fence.epoch}): write refused")
