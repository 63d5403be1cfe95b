"""The store interface: every piece of durable state goes through it, no SQL elsewhere.

SQLite (``reactor.store.sqlite``) is the embedded default; PostgreSQL (``reactor.store.postgres``)
implements the same protocol with the same behaviour (contract tests run on both). Every method is a
coroutine: implementations may run blocking I/O off the event loop.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ObjectKind = Literal["user", "group", "lifecycle", "reconcile"]


@dataclass(slots=True)
class JournalItem:
    """One accepted notification, as journaled. ``payload`` is the raw notification object.

    Not frozen, for speed on the intake's hot path (a frozen dataclass costs five times as much to
    build): treat instances as read-only once journaled.
    """

    kind: ObjectKind
    object_id: str
    received_at: float
    payload: dict[str, Any]
    subscription_id: str = ""
    change_type: str = ""


@dataclass(slots=True)
class JournalEntry(JournalItem):
    """A journaled item with its sequence number (set once, by whoever journaled it)."""

    seq: int = 0


PENDING_PREFIX = "pending:"


@dataclass(frozen=True)
class SubscriptionRecord:
    """A Graph subscription this reactor owns. ``expires_at`` is the one Graph returned (epoch seconds)."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires_at: float
    created_at: float
    last_renewed_at: float = 0.0
    last_reauthorized_at: float = 0.0

    @property
    def pending(self) -> bool:
        """A subscription being created: its clientState is stored before the POST to Graph, under an
        id of :data:`PENDING_PREFIX` + a random part, and replaced by the real record after the 201."""
        return self.id.startswith(PENDING_PREFIX)


@dataclass(frozen=True)
class ObjectMapping:
    """Entra object id ↔ AskCody SCIM id, with the last state applied to AskCody (plain data)."""

    kind: Literal["user", "group"]
    entra_id: str
    scim_id: str
    state: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0


@dataclass(frozen=True)
class DeadLetter:
    """A change that exhausted its retries or failed permanently."""

    id: int
    kind: str
    object_id: str
    change: dict[str, Any]
    error: str
    attempts: list[dict[str, Any]]
    created_at: float


@dataclass(frozen=True)
class AppliedChange:
    """One line of the 'recent changes' shown on the status page (an audit row: :func:`change_of`)."""

    at: float
    entra_id: str
    what: str
    why: str
    who: str = ""


AuditCause = Literal["notification", "groups delta", "reconcile", "cli"]
AuditOutcome = Literal["applied", "failed", "refused"]


@dataclass(frozen=True)
class AuditRow:
    """One SCIM operation the reactor applied or tried (``reactor audit``, the status page's recent
    changes), kept for ``store.audit_retention_days``.

    ``cause``: what set it off (several, comma separated, when work of different origins was merged);
    ``reason``: the cause as the engine names it ("2 notification(s) (updated)", "periodic
    reconcile", "reactor sync"); ``journal_seqs``: the journal entries behind it, when known (for a
    groups-delta round, the group notifications that started the round). ``outcome``: ``applied``;
    ``refused`` (applied without optional attributes AskCody refused, named in ``error``); ``failed``
    (``error`` says why). ``entra_id`` is the user's, or the group's for an ``ensure_group``.
    """

    at: float
    entra_id: str
    upn: str
    op: str
    """The operation's kind (:func:`reactor.domain.operations.kind`): ``create_user``, ``add_member``…"""
    operation: str
    """The operation as people read it (:func:`reactor.domain.operations.describe`, with names)."""
    cause: str
    reason: str
    outcome: AuditOutcome = "applied"
    error: str = ""
    journal_seqs: tuple[int, ...] = ()
    mail: str = ""


def audit_values(row: AuditRow) -> tuple[Any, ...]:
    """The audit table's columns for ``row`` up to ``error`` (the stores add ``journal_seqs`` in
    their own encoding): the UPN and e-mail also lowered, as the lookups of ``reactor audit --user``."""
    r = row
    return (r.at, r.entra_id, r.upn, r.upn.lower(), r.mail, r.mail.lower(), r.op, r.operation, r.cause, r.reason,
            r.outcome, r.error)


def change_of(row: AuditRow) -> AppliedChange:
    """The status page's line for an audit row (a refusal says what was left out)."""
    what = f"{row.operation}; {row.error}" if row.outcome == "refused" and row.error else row.operation
    return AppliedChange(row.at, row.entra_id, what, row.reason, row.upn)


@dataclass(frozen=True)
class Fence:
    """A term of leadership: the replica that leads and the lease's epoch (raised at every change of
    leader). A write given a fence is refused with :class:`~reactor.errors.LeadershipLost` unless
    that replica still holds the lease with that epoch, checked in the write's own transaction."""

    holder: str
    epoch: int


@dataclass(frozen=True)
class ReplicaInfo:
    """A live ``reactor serve`` process on the store: its id, when it joined, until when its last
    heartbeat keeps it alive (the store's clock), and what it said of itself (host, pid, version)."""

    id: str
    started_at: float
    expires_at: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Leadership:
    """Who holds the leader lease now, with which epoch, until when (the store's clock)."""

    holder: str
    epoch: int
    expires_at: float


def new_replica_id() -> str:
    """A replica id unique to this process: host, pid and a random part (a restarted process is a new
    replica; what the old one left is taken over once its heartbeat expires, or at once after a stop)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


ClaimKey = tuple[str, str]
"""``(kind, object_id)`` of a unit of work (``(kind, "*")`` for a kind handled as one batch)."""


class Lifecycle(Protocol):
    """Opening, closing and probing a store."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`~reactor.errors.StoreError` when the store cannot be used."""


class Journal(Protocol):
    """The durable journal of accepted notifications and follow-up work (the intake writes it, the
    dispatcher reads it and marks entries done)."""

    def append(self, items: Sequence[JournalItem]) -> Awaitable[list[int]]:
        """Durably journal ``items`` (group commit); the awaitable gives their sequence numbers.

        May raise :class:`~reactor.errors.StoreError` at once or through the awaitable."""

    async def pending(self, after_seq: int = 0, limit: int = 10_000) -> list[JournalEntry]:
        """Journaled items not yet marked done, in sequence order."""

    async def mark_done(self, seqs: Sequence[int]) -> None: ...

    async def backlog(self) -> tuple[int, float | None]:
        """Number of pending items and the ``received_at`` of the oldest one."""


class Subscriptions(Protocol):
    """Our Graph subscriptions and their clientStates (the intake checks against them)."""

    async def save_subscription(self, record: SubscriptionRecord, fence: Fence | None = None) -> None:
        """Insert or replace ``record``; with a ``fence``, only while it holds (else
        :class:`~reactor.errors.LeadershipLost`, nothing written)."""

    async def delete_subscription(self, subscription_id: str, fence: Fence | None = None) -> None: ...

    async def subscriptions(self) -> list[SubscriptionRecord]: ...


class Meta(Protocol):
    """Small named pieces of state, such as delta links."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` remove) a small piece of state, such as a delta link."""


class Mappings(Protocol):
    """Entra object id ↔ AskCody SCIM id, with the last state applied."""

    async def get_mapping(self, kind: Literal["user", "group"], entra_id: str) -> ObjectMapping | None: ...

    async def put_mapping(self, mapping: ObjectMapping) -> None: ...

    async def delete_mapping(self, kind: Literal["user", "group"], entra_id: str) -> None: ...

    async def mappings(self, kind: Literal["user", "group"]) -> list[ObjectMapping]: ...


class Memberships(Protocol):
    """Entra group memberships: what Graph said last, kept current by groups delta."""

    async def update_members(self, group_id: str, added: Sequence[str], removed: Sequence[str]) -> None: ...

    async def replace_members(self, group_id: str, members: Sequence[str]) -> None: ...

    async def members_of(self, group_id: str) -> set[str]: ...

    async def groups_of(self, user_id: str) -> set[str]: ...

    async def member_users(self) -> set[str]:
        """Every user id that is a member of some group we track."""


class DeadLetters(Protocol):
    """Work that failed for good and waits for a person (``reactor deadletters``)."""

    async def add_dead_letter(
        self, kind: str, object_id: str, change: dict[str, Any], error: str, attempts: list[dict[str, Any]]
    ) -> int: ...

    async def dead_letters(self) -> list[DeadLetter]: ...

    async def delete_dead_letter(self, dead_letter_id: int) -> None: ...


class ChangeLog(Protocol):
    """The applied changes shown on the status page: the audit's applied and refused operations."""

    async def recent_changes(self, limit: int = 50) -> list[AppliedChange]:
        """The newest ``limit`` applied (or refused-attribute) audit rows, newest first."""


class Audit(Protocol):
    """Every SCIM operation applied or tried, with its cause and outcome (``reactor audit``)."""

    async def record_audit(self, rows: Sequence[AuditRow]) -> None: ...

    async def audit(self, user: str | None = None, since: float | None = None, limit: int = 10_000) -> list[AuditRow]:
        """The newest ``limit`` rows at or after ``since``, oldest first (in the order applied);
        ``user``: only the rows of the user with this Entra object id, UPN or e-mail (letter case
        ignored for the UPN and e-mail)."""

    async def prune_audit(self, before: float) -> int:
        """Remove the rows older than ``before``; how many were removed."""


class Coordination(Protocol):
    """Several ``reactor serve`` replicas on one store: who is alive, who leads, who handles which
    object, and whose journal entries are whose. Times are the store's clock (PostgreSQL's
    ``clock_timestamp()``; SQLite: this machine's), so replicas on machines with skewed clocks agree.

    ``replica_id`` owns the journal entries this store appends; ``shared`` says whether other
    processes may run on the same store at once (PostgreSQL) or not (SQLite: one process, so
    claims are not needed and a restart may take over everything at once)."""

    replica_id: str
    shared: bool

    async def heartbeat(self, info: dict[str, Any], ttl: float) -> bool:
        """Keep this replica alive for ``ttl`` seconds more, and its claims with it. ``False`` when
        its previous heartbeat had already expired (others may have taken over its work)."""

    async def replicas(self) -> list[ReplicaInfo]:
        """The live replicas (heartbeat not expired), oldest first."""

    async def lead(self, ttl: float) -> Fence | None:
        """Take or keep the leader lease for ``ttl`` seconds; the fence when this replica leads, else
        ``None``. The epoch changes whenever the lease changes hands (or lapsed in between)."""

    async def leadership(self) -> Leadership | None:
        """The current (unexpired) leader lease, if any."""

    async def claim(self, keys: Sequence[ClaimKey], ttl: float) -> list[ClaimKey]:
        """Claim ``keys`` for this replica for ``ttl`` seconds (heartbeats extend them); the keys now
        held. A key held by another replica whose claim has not expired is not taken."""

    async def release(self, keys: Sequence[ClaimKey]) -> None:
        """Give up this replica's claims on ``keys``."""

    async def claim_all(self, ttl: float) -> bool:
        """Hold every object at once for ``ttl`` seconds (heartbeats extend it, as they do claims): for
        a replica that is alone, so that its units need no claim each. Refused (``False``) while
        another replica holds an unexpired claim on any object, or holds every object itself. While
        it is held, :meth:`claim` by any other replica takes nothing."""

    async def release_all(self) -> None:
        """Give up the hold on every object (:meth:`claim_all`); claims on single objects stay."""

    async def adopt(
        self, *, kinds: Collection[str] | None = None, everything: bool = False, limit: int = 1000
    ) -> list[JournalEntry]:
        """Take over journal entries whose owner is not alive (left, crashed, or a CLI process): they
        become this replica's and are returned in sequence order. ``kinds`` limits which kinds are
        taken; ``everything`` takes every entry whoever owns it (a single-node store at start)."""

    async def hand_off(self, seqs: Sequence[int]) -> None:
        """Let go of this replica's journal entries ``seqs`` (work only the leader does): the next
        adopter of their kind takes them."""

    async def leave(self) -> None:
        """This replica stops: its claims and leadership end now and its journal entries are free."""


class Store(
    Lifecycle, Journal, Subscriptions, Meta, Mappings, Memberships, DeadLetters, ChangeLog, Audit, Coordination, Protocol
):
    """Durable state of the reactor: every role above. Consumers type against the roles they use;
    every store (SQLite, PostgreSQL) implements them all."""
