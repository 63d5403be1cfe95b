"""Replicas on one PostgreSQL database: heartbeats, the leader lease with its fencing epoch, claims on
objects, and the ownership of journal entries (:class:`~reactor.store.base.Coordination`).

Every time is PostgreSQL's ``clock_timestamp()``, so replicas on machines with skewed clocks agree on
who is alive. Races are settled by the database: the lease and the claims are single rows taken with
``INSERT … ON CONFLICT DO UPDATE … WHERE`` (expired or already ours), adoption takes journal rows
with ``FOR UPDATE SKIP LOCKED``, and a fenced write locks the lease row ``FOR SHARE`` in its own
transaction, so a takeover waits for it and the old leader's writes after the takeover are refused.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson

from reactor.errors import LeadershipLost
from reactor.store.base import ClaimKey, Fence, JournalEntry, Leadership, ReplicaInfo
from reactor.store.postgres_writer import PostgresWriter

COORDINATION_SCHEMA = """
ALTER TABLE journal ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX journal_by_owner ON journal (owner);
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    info BYTEA NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE claims (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE INDEX claims_by_holder ON claims (holder);
"""
"""Migration 3: what several replicas share beside the data."""

HOLD_ROW = "INSERT INTO claims (kind, object_id, holder, expires_at) VALUES ('*', '*', '', 0) ON CONFLICT DO NOTHING"
"""The hold on every object, free (holder ``''``), unless it exists."""

CLAIMS_BY_KEY_ONLY = f"""
DROP INDEX IF EXISTS claims_by_holder;
{HOLD_ROW};
"""
"""Migration 4: claims are found by their key alone. With an index on the holder, the planner answered
a release of a few keys by walking every claim of this replica, live and dead (one replica holds
them all, and claims come and go thousands of times a second): 48 µs of statement time per key
released, a third of a core under the ingest load (bench/README.md). The heartbeat's and the
stop's statements by holder scan the table instead; the live claims are few.

And the row ``('*', '*')``: the hold on every object (:meth:`PostgresCoordination.claim_all`), free
while its holder is ``''``. It always exists, so that a claim can lock it (see ``claim``)."""

ALL = "claims.kind = '*' AND claims.object_id = '*'"
RELEASE_ALL = f"UPDATE claims SET holder = '', expires_at = 0 WHERE {ALL} AND holder = $1"
"""This replica ($1) gives up the hold on every object."""

NOW = "extract(epoch from clock_timestamp())"
LEADER = "leader"
FORGET_DEAD_AFTER = 86_400.0
"""Rows of replicas dead this long are removed by the next heartbeat (the status page lists the live)."""

_ENTRY_COLUMNS = "seq, kind, object_id, subscription_id, change_type, received_at, payload"


class PostgresCoordination(PostgresWriter):
    """The :class:`~reactor.store.base.Coordination` queries; ``replica_id`` owns this store's appends."""

    async def open(self) -> None:
        await super().open()
        if CLAIMS_BY_KEY_ONLY not in self.migrations:
            return  # a schema without the hold (a test of older schemas)
        # The hold on every object must exist for any claim to be made (see ``claim``); a database
        # restored without it, or emptied by hand, gets it back here.
        await self._run(lambda c: c.execute(HOLD_ROW))

    async def heartbeat(self, info: dict[str, Any], ttl: float) -> bool:
        async def job(c: Any) -> bool:
            previous = await c.fetchval(
                f"SELECT expires_at > {NOW} FROM replicas WHERE id = $1 FOR UPDATE", self.replica_id
            )
            await c.execute(
                f"INSERT INTO replicas (id, started_at, expires_at, info) VALUES ($1, {NOW}, {NOW} + $2, $3)"
                " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, info = excluded.info",
                self.replica_id, ttl, orjson.dumps(info),
            )
            await c.execute(f"UPDATE claims SET expires_at = {NOW} + $2 WHERE holder = $1", self.replica_id, ttl)
            await c.execute(f"DELETE FROM replicas WHERE expires_at < {NOW} - $1", FORGET_DEAD_AFTER)
            return previous is None or bool(previous)

        return await self._transaction(job)

    async def replicas(self) -> list[ReplicaInfo]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT id, started_at, expires_at, info FROM replicas WHERE expires_at > {NOW} ORDER BY started_at, id"
        ))
        return [ReplicaInfo(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]

    async def lead(self, ttl: float) -> Fence | None:
        epoch = await self._run(lambda c: c.fetchval(
            f"INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {NOW} + $3)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,"
            f" epoch = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > {NOW}"
            " THEN leases.epoch ELSE leases.epoch + 1 END"
            f" WHERE leases.holder = excluded.holder OR leases.expires_at <= {NOW}"
            " RETURNING epoch",
            LEADER, self.replica_id, ttl,
        ))
        return None if epoch is None else Fence(self.replica_id, int(epoch))

    async def leadership(self) -> Leadership | None:
        row = await self._run(lambda c: c.fetchrow(
            f"SELECT holder, epoch, expires_at FROM leases WHERE name = $1 AND expires_at > {NOW}", LEADER
        ))
        return None if row is None else Leadership(row[0], int(row[1]), float(row[2]))

    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return []
        # The hold on every object is locked FOR SHARE while the claims are made, and only when no
        # other replica holds it: a replica taking it (claim_all) waits for this statement, then finds
        # these claims; a claim made while it is being taken waits for that, then takes nothing.
        rows = await self._run(lambda c: c.fetch(
            f"WITH free AS MATERIALIZED (SELECT 1 FROM claims WHERE {ALL}"
            f" AND (claims.holder = '' OR claims.holder = $3 OR claims.expires_at <= {NOW}) FOR SHARE)"
            f" INSERT INTO claims (kind, object_id, holder, expires_at) SELECT k, o, $3, {NOW} + $4"
            " FROM unnest($1::text[], $2::text[]) AS t(k, o) WHERE EXISTS (SELECT 1 FROM free)"
            " ON CONFLICT (kind, object_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
            f" WHERE claims.holder = excluded.holder OR claims.expires_at <= {NOW}"
            " RETURNING kind, object_id",
            [k for k, _ in unique], [o for _, o in unique], self.replica_id, ttl,
        ))
        held = {(r[0], r[1]) for r in rows}
        return [k for k in unique if k in held]

    async def release(self, keys: Sequence[ClaimKey]) -> None:
        if not keys:
            return
        await self._run(lambda c: c.execute(
            # A join on the primary key: one index probe per key. (The ``(kind, object_id) IN (SELECT …)``
            # form let the planner walk every claim of this holder instead: 2.5 ms a statement under load.)
            "DELETE FROM claims c USING unnest($1::text[], $2::text[]) AS t(k, o)"
            " WHERE c.kind = t.k AND c.object_id = t.o AND c.holder = $3",
            [k for k, _ in keys], [o for _, o in keys], self.replica_id,
        ))

    async def claim_all(self, ttl: float) -> bool:
        me = self.replica_id
        took = await self._run(lambda c: c.fetchval(
            f"UPDATE claims SET holder = $1, expires_at = {NOW} + $2 WHERE {ALL}"
            f" AND (claims.holder = '' OR claims.holder = $1 OR claims.expires_at <= {NOW}) RETURNING 1",
            me, ttl,
        ))
        if took is None:
            return False
        # A statement of its own, after the one above committed: it sees every claim made before the
        # hold was taken (claims made after it take nothing, see ``claim``).
        others = await self._run(lambda c: c.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM claims WHERE NOT ({ALL}) AND holder <> $1 AND expires_at > {NOW})", me
        ))
        if others:
            await self.release_all()
            return False
        return True

    async def release_all(self) -> None:
        await self._run(lambda c: c.execute(RELEASE_ALL, self.replica_id))

    async def adopt(
        self, *, kinds: Collection[str] | None = None, everything: bool = False, limit: int = 1000
    ) -> list[JournalEntry]:
        whose = (
            "TRUE" if everything else
            f"j.owner <> $1 AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = j.owner AND r.expires_at > {NOW})"
        )
        rows = await self._run(lambda c: c.fetch(
            f"UPDATE journal SET owner = $1 WHERE seq IN (SELECT j.seq FROM journal j WHERE {whose}"
            " AND ($2::text[] IS NULL OR j.kind = ANY($2::text[])) ORDER BY j.seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_ENTRY_COLUMNS}",
            self.replica_id, None if kinds is None else list(kinds), limit,
        ))
        entries = [
            JournalEntry(seq=r[0], kind=r[1], object_id=r[2], subscription_id=r[3], change_type=r[4],
                         received_at=r[5], payload=orjson.loads(r[6]))
            for r in rows
        ]
        entries.sort(key=lambda e: e.seq)
        return entries

    async def hand_off(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        await self._run(lambda c: c.execute(
            "UPDATE journal SET owner = '' WHERE owner = $1 AND seq = ANY($2::bigint[])", self.replica_id, list(seqs)
        ))

    async def leave(self) -> None:
        async def job(c: Any) -> None:
            await c.execute(RELEASE_ALL, self.replica_id)
            await c.execute("DELETE FROM claims WHERE holder = $1", self.replica_id)
            await c.execute(f"UPDATE leases SET expires_at = {NOW} - 1 WHERE holder = $1", self.replica_id)
            await c.execute("UPDATE journal SET owner = '' WHERE owner = $1", self.replica_id)
            await c.execute("DELETE FROM replicas WHERE id = $1", self.replica_id)

        await self._transaction(job)

    async def _check_fence(self, c: Any, fence: Fence | None) -> None:
        """Inside a write's transaction: hold the lease row (a takeover waits for this commit) and
        refuse the write unless ``fence`` still leads."""
        if fence is None:
            return
        held = await c.fetchval(
            f"SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > {NOW} FOR SHARE",
            LEADER, fence.holder, fence.epoch,
        )
        if held is None:
            raise LeadershipLost(f"replica {fence.holder} no longer leads (epoch {fence.epoch}): write refused")
