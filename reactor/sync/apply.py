"""Execute the planner's operations against AskCody.

:func:`apply_operations` takes the operations of one user's plan, or of many users' plans
concatenated (a full reconcile), and runs them in phases so that membership writes are batched per
group while each user's order still holds:

1. ``EnsureGroup`` (each group once);
2. ``CreateUser``, ``UpdateUser``, ``SetActive(True)``;
3. ``AddMember``, one PATCH per group for many users (and, through a :class:`GroupCommit`, for the
   users of many concurrent calls);
4. ``RemoveMember``, per group likewise;
5. ``SetActive(False)``, ``DeleteUser`` (deprovisioning last, after the member removals).

A user's writes carry ``If-Match`` (see :meth:`~reactor.scim.client.AskCodyClient.request`) when a
version is given for the user (``versions``: the state they were planned from), each later write of
that user the version its previous write's answer gave; :attr:`ApplyResult.versions` has the last
one. Member PATCHes carry none: they add or remove one member by value, right whatever else the
group holds, and the members of many users share one PATCH (a version per group would make those
PATCHes refuse each other). A delete carries none either: it is wanted whatever the user holds.

A failure (any :class:`~reactor.errors.ReactorError`, raised after the retries of the client) stops
the user's remaining operations but not the other users'; it is reported in
:attr:`ApplyResult.failures` by Entra user id. An operation whose group could not be ensured fails
for its user. Every applied operation counts ``reactor_changes_applied_total{operation}``.

A person must not lose access over an optional attribute: when AskCody answers 400 to a create or
an attribute update, the write is tried once more without the optional attributes the error names
(all of them when it names none; no second try when it names only ``userName``/``externalId``). What
was left out is reported in :attr:`ApplyResult.refused`; the operation counts as applied.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from reactor import log
from reactor.domain.model import ScimUser, UserAttributes
from reactor.domain.operations import (
    AddMember,
    CreateUser,
    DeleteUser,
    EnsureGroup,
    Operation,
    RemoveMember,
    SetActive,
    UpdateUser,
    entra_user_of,
    kind,
)
from reactor.errors import PermanentError, ReactorError, TransientError
from reactor.metrics import CHANGES_APPLIED
from reactor.scim.client import MEMBER_BATCH, AskCodyClient, ScimError
from reactor.sync.planner import attribute_changes

T = TypeVar("T")

OPTIONAL_ATTRIBUTES: dict[str, re.Pattern[str]] = {
    "display_name": re.compile(r"\bdisplayName\b", re.IGNORECASE),
    "given_name": re.compile(r"\bgivenName\b", re.IGNORECASE),
    "family_name": re.compile(r"\bfamilyName\b", re.IGNORECASE),
    "email": re.compile(r"\be-?mails?\b", re.IGNORECASE),
    "cost_center": re.compile(r"\bcostCenter\b", re.IGNORECASE),
}
"""The :class:`UserAttributes` a user can be provisioned without, and how a SCIM error names each."""
REQUIRED_ATTRIBUTES = re.compile(r"\b(userName|externalId)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Refusal:
    """AskCody refused optional attributes of a user; the write went through without them."""

    entra_id: str
    attributes: tuple[str, ...]
    """:class:`UserAttributes` field names left out."""
    error: ScimError


@dataclass
class ApplyResult:
    """What :func:`apply_operations` did.

    ``applied``: the operations done, in order; ``failures``: Entra user id (``group:<id>`` for a
    group that could not be ensured) → the error; ``skipped``: operations not attempted because an
    earlier one of the same user failed; ``user_ids``/``group_ids``: Entra id → SCIM id of the
    users created or adopted and of every group used.
    """

    applied: list[Operation] = field(default_factory=list)
    failures: dict[str, ReactorError] = field(default_factory=dict)
    skipped: list[Operation] = field(default_factory=list)
    user_ids: dict[str, str] = field(default_factory=dict)
    group_ids: dict[str, str] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    """Optional attributes AskCody refused (400), left out of a create or update that then succeeded."""
    versions: dict[str, str | None] = field(default_factory=dict)
    """Entra user id → the user's version (ETag) after its last write here (None: AskCody gave none);
    users without a create, update or activation are not in it."""

    @property
    def ok(self) -> bool:
        """True when every operation was applied."""
        return not self.failures


class MemberWriter(Protocol):
    """Where membership writes go: the client itself, or a :class:`GroupCommit` in front of it."""

    async def add_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None: ...

    async def remove_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None: ...


class GroupCommit:
    """Membership writes of many callers (the units of many users) carried by one group PATCH.

    A caller's adds (or removes) wait in the group's queue; one drain per group and direction sends
    what has gathered, at most ``batch`` members a PATCH, while the next callers gather behind it
    (after ``linger`` seconds for the first ones to be joined by others). Each caller gets the outcome
    of the PATCH that carried its members: a transient failure (left after the client's retries) is
    every caller's, so each unit is run again; a permanent one is isolated: the members of that batch
    are sent once more caller by caller, so that one refused member fails only its own user. Adds and
    removes of one group go in separate PATCHes; a user's own writes are in order because its unit
    waits for each before the next (and the dispatcher never runs a user twice at once).
    """

    def __init__(self, client: MemberWriter, *, batch: int = MEMBER_BATCH, linger: float = 0.05) -> None:
        self.client = client
        self.batch = batch
        self.linger = linger
        self._queues: dict[tuple[str, bool], deque[tuple[list[str], asyncio.Future[None]]]] = {}
        self._drains: dict[tuple[str, bool], asyncio.Task[None]] = {}

    async def add_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None:
        await self._submit((scim_group_id, True), list(user_ids))

    async def remove_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None:
        await self._submit((scim_group_id, False), list(user_ids))

    async def _submit(self, key: tuple[str, bool], user_ids: list[str]) -> None:
        if not user_ids:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append((user_ids, future))
        if key not in self._drains:
            self._drains[key] = asyncio.create_task(self._drain(key), name=f"group-commit-{key[0]}")
        await future

    async def _drain(self, key: tuple[str, bool]) -> None:
        queue = self._queues[key]
        try:
            while queue:
                if sum(len(ids) for ids, _ in queue) < self.batch:
                    await asyncio.sleep(self.linger)  # lets the members of other units join this PATCH
                taken: list[tuple[list[str], asyncio.Future[None]]] = []
                count = 0
                while queue and (not taken or count + len(queue[0][0]) <= self.batch):
                    ids, future = queue.popleft()
                    if future.done():  # its caller was cancelled
                        continue
                    taken.append((ids, future))
                    count += len(ids)
                if taken:
                    await self._send(key, taken)
        except BaseException as exc:
            for _, future in queue:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else TransientError("stopped"))
            raise
        finally:
            del self._drains[key]
            if not queue:
                self._queues.pop(key, None)

    async def _send(self, key: tuple[str, bool], taken: list[tuple[list[str], asyncio.Future[None]]]) -> None:
        group_id, add = key
        write = self.client.add_members if add else self.client.remove_members
        try:
            await write(group_id, [uid for ids, _ in taken for uid in ids])
        except ReactorError as exc:
            if isinstance(exc, TransientError) or len(taken) == 1:
                _settle(taken, exc)
                return
            log.event("group_commit_isolating", level="warning", group=group_id, callers=len(taken), error=str(exc))
            for one in taken:
                try:
                    await write(group_id, one[0])
                except ReactorError as own:
                    _settle([one], own)
                else:
                    _settle([one], None)
            return
        except BaseException as exc:
            _settle(taken, exc if isinstance(exc, Exception) else TransientError("stopped"))
            raise
        _settle(taken, None)


def _settle(taken: Sequence[tuple[list[str], asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in taken:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def apply_operations(
    client: AskCodyClient,
    operations: Sequence[Operation],
    *,
    group_ids: Mapping[str, str] | None = None,
    members: MemberWriter | None = None,
    versions: Mapping[str, str] | None = None,
) -> ApplyResult:
    """Apply ``operations``; ``group_ids`` (Entra → SCIM group id) are the groups already known;
    ``members`` takes the membership writes (default: the client, one PATCH per group of this call);
    ``versions`` (Entra user id → version): what the user's first update or activation expects
    AskCody to hold (``If-Match``), none when a user is not in it."""
    result = ApplyResult(group_ids=dict(group_ids or {}))
    writer: MemberWriter = members if members is not None else client
    expected: dict[str, str | None] = dict(versions or {})

    def wrote(entra_id: str, version: str | None) -> None:
        result.versions[entra_id] = version
        if entra_id in expected:  # the user's writes are conditional: the next expects this one's
            expected[entra_id] = version

    def blocked(op: Operation) -> bool:
        user = entra_user_of(op)
        if user is not None and user in result.failures:
            result.skipped.append(op)
            return True
        return False

    def done(op: Operation) -> None:
        result.applied.append(op)
        CHANGES_APPLIED.labels(kind(op)).inc()

    for ensure in _unique_groups(operations):
        try:
            group = await client.ensure_group(ensure.entra_group_id, ensure.display_name)
        except ReactorError as exc:
            result.failures[f"group:{ensure.entra_group_id}"] = exc
            continue
        result.group_ids[ensure.entra_group_id] = group.id
        done(ensure)

    for op in operations:
        if not isinstance(op, CreateUser | UpdateUser) and not (isinstance(op, SetActive) and op.active):
            continue
        if blocked(op):
            continue
        try:
            if isinstance(op, CreateUser):
                user, created = await create_user(client, op, result.refused)
                if not created:
                    user = await adopt(client, user, op.attrs, active=op.active, refused=result.refused)
                result.user_ids[op.entra_id] = user.id
                wrote(op.entra_id, user.version)
            elif isinstance(op, UpdateUser):
                wrote(op.entra_id, await update_user(client, op.entra_id, op.scim_id, op.changes, result.refused,
                                                     version=expected.get(op.entra_id)))
            else:
                wrote(op.entra_id, await client.set_active(op.scim_id, True, version=expected.get(op.entra_id)))
        except ReactorError as exc:
            result.failures[op.entra_id] = exc
            continue
        done(op)

    await _members(writer, [op for op in operations if isinstance(op, AddMember)], result, blocked, done, add=True)
    await _members(writer, [op for op in operations if isinstance(op, RemoveMember)], result, blocked, done, add=False)

    for op in operations:
        if not isinstance(op, DeleteUser) and not (isinstance(op, SetActive) and not op.active):
            continue
        if blocked(op):
            continue
        try:
            if isinstance(op, DeleteUser):
                await client.delete_user(op.scim_id)
            else:
                wrote(op.entra_id, await client.set_active(op.scim_id, False, version=expected.get(op.entra_id)))
        except ReactorError as exc:
            result.failures[op.entra_id] = exc
            continue
        done(op)
    return result


def _unique_groups(operations: Sequence[Operation]) -> list[EnsureGroup]:
    seen: dict[str, EnsureGroup] = {}
    for op in operations:
        if isinstance(op, EnsureGroup) and op.entra_group_id not in seen:
            seen[op.entra_group_id] = op
    return list(seen.values())


async def _members(
    client: MemberWriter,
    ops: list[AddMember] | list[RemoveMember],
    result: ApplyResult,
    blocked: Callable[[Operation], bool],
    done: Callable[[Operation], None],
    *,
    add: bool,
) -> None:
    batches: dict[str, list[tuple[AddMember | RemoveMember, str]]] = defaultdict(list)
    for op in ops:
        if blocked(op):
            continue
        group_id = op.scim_group_id or result.group_ids.get(op.entra_group_id)
        user_id = op.scim_user_id or result.user_ids.get(op.entra_user_id)
        if group_id is None:
            missing = result.failures.get(f"group:{op.entra_group_id}")
            result.failures[op.entra_user_id] = missing or PermanentError(
                f"group {op.entra_group_id} is not in AskCody and no EnsureGroup preceded"
            )
            continue
        if user_id is None:
            result.failures[op.entra_user_id] = PermanentError(
                f"user {op.entra_user_id} has no SCIM id and no CreateUser preceded"
            )
            continue
        batches[group_id].append((op, user_id))
    for group_id, members in batches.items():
        user_ids = [user_id for _, user_id in members]
        try:
            if add:
                await client.add_members(group_id, user_ids)
            else:
                await client.remove_members(group_id, user_ids)
        except ReactorError as exc:
            for op, _ in members:
                result.failures.setdefault(op.entra_user_id, exc)
            continue
        for op, _ in members:
            done(op)


async def adopt(
    client: AskCodyClient, existing: ScimUser, attrs: UserAttributes, *, active: bool, refused: list[Refusal] | None = None
) -> ScimUser:
    """Make a user AskCody already holds (a 409 on create) carry ``attrs`` (externalId included) and
    ``active``: the planner says what differs, the client writes it. Returns the user as AskCody holds it.
    Optional attributes AskCody refuses are left out and noted in ``refused``."""
    log.event("user_adopted", entra_id=attrs.external_id, scim_id=existing.id)
    changes = attribute_changes(attrs, existing)
    if changes:
        await update_user(client, attrs.external_id, existing.id, changes, [] if refused is None else refused)
    if existing.active != active:
        await client.set_active(existing.id, active)
    if not changes and existing.active == active:
        return existing
    return await client.get_user(existing.id)


async def create_user(client: AskCodyClient, op: CreateUser, refused: list[Refusal]) -> tuple[ScimUser, bool]:
    """``client.create_user``; on a 400, once more without the optional attributes it refused."""
    present = [name for name in OPTIONAL_ATTRIBUTES if getattr(op.attrs, name)]

    def attempt(dropped: Collection[str]) -> Awaitable[tuple[ScimUser, bool]]:
        values = op.attrs.as_dict() | dict.fromkeys(dropped)
        return client.create_user(UserAttributes(**values), active=op.active)

    return await _without_refused(attempt, op.entra_id, present, refused)


async def update_user(
    client: AskCodyClient, entra_id: str, scim_id: str, changes: Mapping[str, str | None], refused: list[Refusal],
    *, version: str | None = None,
) -> str | None:
    """``client.update_user`` (``version``: its ``If-Match``); on a 400, once more without the optional
    attributes it refused (a refused write changed nothing: the same version). The version after it."""

    def attempt(dropped: Collection[str]) -> Awaitable[str | None]:
        return client.update_user(scim_id, {k: v for k, v in changes.items() if k not in dropped}, version=version)

    return await _without_refused(
        attempt, entra_id, [name for name in changes if name in OPTIONAL_ATTRIBUTES], refused
    )


async def _without_refused(
    attempt: Callable[[Collection[str]], Awaitable[T]], entra_id: str, optional: Sequence[str], refused: list[Refusal]
) -> T:
    try:
        return await attempt(())
    except ScimError as exc:
        dropped = refused_attributes(exc, optional)
        if not dropped:
            raise
        outcome = await attempt(dropped)
        refused.append(Refusal(entra_id, dropped, exc))
        return outcome


def refused_attributes(error: ScimError, optional: Sequence[str]) -> tuple[str, ...]:
    """Which of the ``optional`` attributes sent to leave out after ``error``: none unless it is a 400;
    those the error's detail names, else every one, unless it names only ``userName``/``externalId``."""
    if error.status != 400 or not optional:
        return ()
    detail = error.detail or ""
    named = tuple(name for name in optional if OPTIONAL_ATTRIBUTES[name].search(detail))
    if named:
        return named
    if REQUIRED_ATTRIBUTES.search(detail):
        return ()
    return tuple(optional)
