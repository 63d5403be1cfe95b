"""The PostgreSQL store: the schema (as migrations) and the queries of :class:`PostgresStore`, on the
pool, migration lock and group-commit writer of :mod:`reactor.store.postgres_writer`."""

from __future__ import annotations

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
from reactor.store.postgres_coordination import CLAIMS_BY_KEY_ONLY, COORDINATION_SCHEMA, PostgresCoordination

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
    """
    CREATE TABLE audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
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
        journal_seqs BIGINT[] NOT NULL
    );
    CREATE INDEX audit_by_entra_id ON audit (entra_id);
    CREATE INDEX audit_by_upn ON audit (upn_key);
    CREATE INDEX audit_by_mail ON audit (mail_key);
    CREATE INDEX audit_by_at ON audit (at);
    DROP TABLE changes;
    """,
    COORDINATION_SCHEMA,
    CLAIMS_BY_KEY_ONLY,
)
"""Migration ``n`` (1-based) brings the schema from version ``n - 1`` to ``n``; append, never edit."""

_AUDIT_COLUMNS = "at, entra_id, upn, op, operation, cause, reason, outcome, error, journal_seqs, mail"
# Text is ordered bytewise, as SQLite does, whatever collation the database was created with.
_C = 'COLLATE "C"'


class PostgresStore(PostgresCoordination):
    """A :class:`~reactor.store.base.Store` on a PostgreSQL database (``postgresql://user@host:port/db``)."""

    migrations = MIGRATIONS

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
    async def save_subscription(self, record: SubscriptionRecord, fence: Fence | None = None) -> None:
        r = record

        async def job(c: Any) -> None:
            await self._check_fence(c, fence)
            await c.execute(
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

        await self._transaction(job)

    async def delete_subscription(self, subscription_id: str, fence: Fence | None = None) -> None:
        async def job(c: Any) -> None:
            await self._check_fence(c, fence)
            await c.execute("DELETE FROM subscriptions WHERE id = $1", subscription_id)

        await self._transaction(job)

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

    # audit -------------------------------------------------------------------------------------
    async def record_audit(self, rows: Sequence[AuditRow]) -> None:
        if not rows:
            return
        values = [(*audit_values(r), list(r.journal_seqs)) for r in rows]
        await self._transaction(lambda c: c.executemany(
            "INSERT INTO audit (at, entra_id, upn, upn_key, mail, mail_key, op, operation, cause, reason, outcome,"
            " error, journal_seqs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            values,
        ))

    async def audit(self, user: str | None = None, since: float | None = None, limit: int = 10_000) -> list[AuditRow]:
        where: list[str] = ["at >= $1"]
        args: list[float | str] = [since if since is not None else float("-inf")]
        if user is not None:
            where.append("(entra_id = $2 OR upn_key = $3 OR mail_key = $3)")
            args += [user, user.lower()]
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC"
            f" LIMIT ${len(args) + 1}",
            *args, limit,
        ))
        return [_audit_row(r) for r in reversed(rows)]

    async def prune_audit(self, before: float) -> int:
        status = await self._run(lambda c: c.execute("DELETE FROM audit WHERE at < $1", before))
        return int(str(status).rsplit(" ", 1)[-1])

    async def recent_changes(self, limit: int = 50) -> list[AppliedChange]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE outcome <> 'failed' ORDER BY at DESC, id DESC LIMIT $1", limit
        ))
        return [change_of(_audit_row(r)) for r in rows]


def _audit_row(r: Any) -> AuditRow:
    return AuditRow(at=r[0], entra_id=r[1], upn=r[2], op=r[3], operation=r[4], cause=r[5], reason=r[6], outcome=r[7],
                    error=r[8], journal_seqs=tuple(r[9]), mail=r[10])
