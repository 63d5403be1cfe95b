"""Rounds over every group of the sync engine: groups-delta rounds (one serves every pending group
notification), the periodic reconcile, and the full read, plan and sync of ``reactor sync``.

The membership changes of the configured groups and of the groups nested in them
(:mod:`reactor.sync.nesting`) are stored, and each affected user is queued as a dirty user through
``enqueue`` (so that one user is still never synced by two workers at once). A mixin of
:class:`~reactor.sync.engine.SyncEngine`, which holds the state it uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from reactor import log
from reactor.config import Settings
from reactor.domain.model import EntraUser, ScimUser, UserAttributes
from reactor.domain.operations import Operation
from reactor.errors import NotFoundError, ReactorError
from reactor.graph.reader import GraphReader, GroupMembers, GroupsDelta, chunks
from reactor.metrics import RECONCILE_DRIFT, RECONCILE_SECONDS
from reactor.scim.client import PAGE_SIZE, AskCodyClient
from reactor.store.base import JournalItem, ObjectMapping, Store
from reactor.sync.nesting import Nesting, Path, depths
from reactor.sync.planner import UserPlan, attribute_changes
from reactor.sync.progress import APPLYING, LISTING, PLANNING, READING_CHANGES, Progress

AFFECTED_KEY = "groups:affected-users"
"""Store meta key: users affected by a groups-delta round whose membership changes are stored but
whose users may not be journaled yet (a crash in between); the next round queues them too."""
NESTING_KEY = "groups:nesting"
"""Store meta key: the nesting of the tracked groups (:class:`~reactor.sync.nesting.Nesting`)."""
MAX_NESTING_ROUNDS = 32
"""Groups-delta rounds over nested groups in one go, each revealing deeper ones (a guard, not a limit
one meets: every round reads all the newly found levels)."""
Write = tuple[str, list[str], list[str] | None]
"""A membership write: (group, added or all members, removed or None: replace)."""


INDEX_SECONDS = 600.0
"""How long a listing of AskCody's users (:class:`ScimIndex`) stands in for lookups of new users."""


@dataclass
class ScimIndex:
    """Every user AskCody held at ``at`` (one paged listing), with their memberships in the
    configured groups (one read of each): the lookups of many users at once without a request each."""

    users: dict[str, ScimUser]
    at: float

    @classmethod
    def of(cls, users: Iterable[ScimUser], at: float) -> ScimIndex:
        return cls({u.id: u for u in users}, at)

    def __post_init__(self) -> None:
        self._keys: dict[tuple[str, str], str] = {}
        for u in self.users.values():
            for key, value in (("x", u.external_id), ("n", u.user_name), ("e", u.email)):
                if value:
                    self._keys.setdefault((key, value.casefold()), u.id)

    def find(self, external_id: str, user_name: str | None, email: str | None) -> ScimUser | None:
        """The user matched by externalId, else userName, else work e-mail (as the lookup matches)."""
        for key, value in (("x", external_id), ("n", user_name), ("e", email)):
            found = self._keys.get((key, value.casefold())) if value else None
            if found is not None:
                return self.users[found]
        return None


@dataclass(frozen=True)
class _GroupRounds:
    """What :meth:`SyncEngine._store_group_changes` read and stored."""

    deltas: list[GroupsDelta]
    affected: set[str]
    full: bool
    """The configured groups' round started over (every user we know is looked at again)."""
    stale_links: list[str]
    """Store meta keys of delta links of an older set of nested groups."""


class GroupRounds:
    """The rounds over every group (see the module's docstring); a mixin of SyncEngine."""

    settings: Settings
    store: Store
    reader: GraphReader
    scim: AskCodyClient
    enqueue: Callable[[Sequence[JournalItem]], Awaitable[None]] | None
    concurrency: int
    last_reconcile_at: float | None
    last_reconcile_error: str | None
    _delta_lock: asyncio.Lock
    index: ScimIndex | None
    progress: Progress

    if TYPE_CHECKING:  # provided by SyncEngine

        async def sync_user(
            self, entra_id: str, *, cause: str, seqs: Sequence[int] = (), origin: str = "cli", fresh: bool = False
        ) -> list[Operation]: ...

        async def plan(
            self, entra_id: str, *, groups: frozenset[str] | None = None, user: EntraUser | None = None,
            read_user: bool = True, group_ids: dict[str, str] | None = None,
            scope: Mapping[str, Mapping[str, Path]] | None = None, remember: bool = True,
            fresh: bool | None = None, index: ScimIndex | None = None,
        ) -> UserPlan: ...

        async def apply(
            self, plan: UserPlan, *, cause: str, seqs: Sequence[int] = (), origin: str = "cli"
        ) -> list[Operation]: ...

        async def group_ids(self) -> dict[str, str]: ...

    # groups ---------------------------------------------------------------------------------------
    async def groups_round(
        self, *, cause: str, received_at: float | None = None, caused_by: Sequence[int] = ()
    ) -> set[str]:
        """One groups-delta round: store membership changes, queue the affected users. Returns them."""
        async with self._delta_lock:
            rounds = await self._store_group_changes()
            await self._index_for(rounds.affected)
            await self._queue_users(rounds.affected, f"{cause}; groups delta", received_at=received_at, caused_by=caused_by)
            await self._groups_delta_done(rounds)
        return rounds.affected

    async def _store_group_changes(self) -> _GroupRounds:
        """Groups-delta rounds over the configured groups, then over the groups nested in them (again
        while a round reveals deeper ones); store the membership changes and the nesting. Returns the
        rounds with the users they affect, those of an earlier round that was cut short before its
        users were journaled included (see :data:`AFFECTED_KEY`). The caller journals the users,
        then calls :meth:`_groups_delta_done`.

        The nested groups have delta links of their own (50 ids a query, as many links as needed):
        when the set of nested groups changes, their round starts over and reads every nested group
        whole, while the configured groups' links stay as they are.
        """
        earlier = await self.store.get_meta(AFFECTED_KEY)
        affected: set[str] = set(orjson.loads(earlier)) if earlier else set()
        raw = await self.store.get_meta(NESTING_KEY)
        before = Nesting.loads(raw)
        after = before.copy()
        configured = self.settings.group_ids
        if raw is None:
            # No nesting recorded yet (a new store, or one from before nested groups): the configured
            # groups' round starts over, so that the groups nested in them are seen.
            for chunk in chunks(configured):
                await self.store.set_meta(self.reader.groups_delta_key(chunk), None)
        first = await self.reader.groups_delta(configured, commit=False)
        writes = await self._group_changes(first, configured, after, affected)
        deltas = [first]
        read: frozenset[str] = frozenset()
        nested_delta: GroupsDelta | None = None
        for _ in range(MAX_NESTING_ROUNDS):
            nested = after.tracked(self.settings) - configured
            if nested <= read:
                break
            nested_delta = await self.reader.groups_delta(nested, commit=False)
            writes += await self._group_changes(nested_delta, nested, after, affected)
            read = nested
        else:
            log.event("nesting_unsettled", level="warning", rounds=MAX_NESTING_ROUNDS, nested_groups=len(read))
        if nested_delta is not None:
            deltas.append(nested_delta)
        after.prune(self.settings)
        after.delta_ids = read
        scope_before, scope_after = before.scope(self.settings), after.scope(self.settings)
        for gid in sorted(set(scope_before) | set(scope_after)):
            if scope_before.get(gid, {}).keys() != scope_after.get(gid, {}).keys():
                # Nested into or out of a configured group: its direct members gain or lose that group.
                affected |= await self.store.members_of(gid)
                if gid not in scope_after:
                    writes.append((gid, [], None))
        if affected:
            # Who is affected is known only before the store changes (a deleted group's members):
            # keep it durably until the caller has journaled them.
            await self.store.set_meta(AFFECTED_KEY, orjson.dumps(sorted(affected)).decode())
        for gid, members, removed in writes:
            if removed is None:
                await self.store.replace_members(gid, members)
            else:
                await self.store.update_members(gid, members, removed)
        if raw is None or after.dumps() != raw:
            await self.store.set_meta(NESTING_KEY, after.dumps())
        old_depths, new_depths = depths(scope_before), depths(scope_after)
        for gid in sorted(configured):
            if old_depths.get(gid) != new_depths.get(gid):
                count, deepest = new_depths.get(gid, (0, 0))
                log.event("nested_groups", group_id=gid, nested_groups=count, depth=deepest)
        stale = {self.reader.groups_delta_key(c) for c in chunks(before.delta_ids)} - {
            self.reader.groups_delta_key(c) for c in chunks(read)
        }
        return _GroupRounds(deltas, affected, first.full, sorted(stale))

    async def _group_changes(self, delta: GroupsDelta, ids: frozenset[str], nesting: Nesting, affected: set[str]) -> list[Write]:
        """The membership writes of one round over the groups ``ids``; records its nesting changes in
        ``nesting`` and the users it affects in ``affected``. Writes nothing."""
        writes: list[Write] = []
        seen = set()
        for gid, change in delta.groups.items():
            if gid not in ids:
                continue
            seen.add(gid)
            if change.deleted:
                old = await self.store.members_of(gid)
                writes.append((gid, [], None))
                affected |= old
                nesting.forget(gid)
                log.event("group_deleted", group_id=gid, members=len(old))
            elif delta.full:
                old = await self.store.members_of(gid)
                new = set(change.added_member_ids) - set(change.removed_member_ids)
                writes.append((gid, sorted(new), None))
                affected |= old ^ new
                nesting.replace(gid, change.added_group_ids - change.removed_group_ids)
            else:
                writes.append((gid, sorted(change.added_member_ids), sorted(change.removed_member_ids)))
                affected |= set(change.added_member_ids) | set(change.removed_member_ids)
                nesting.add(gid, change.added_group_ids, change.removed_group_ids)
        if delta.full:
            for gid in ids - seen:
                # A full round that does not mention a group: it no longer exists (or is empty).
                old = await self.store.members_of(gid)
                if old or nesting.edges.get(gid):
                    exists = await self.reader.get_group(gid)
                    now = await self.reader.group_members(gid) if exists is not None else GroupMembers(frozenset(), frozenset())
                    writes.append((gid, sorted(now.user_ids), None))
                    affected |= old ^ now.user_ids
                    if exists is None:
                        nesting.forget(gid)
                    else:
                        nesting.replace(gid, now.group_ids)
        return writes

    async def _groups_delta_done(self, rounds: _GroupRounds) -> None:
        """The rounds' affected users are journaled: keep their deltaLinks, forget the links of an
        older set of nested groups and the affected users."""
        for delta in rounds.deltas:
            await self.reader.commit(delta)
        for key in rounds.stale_links:
            await self.store.set_meta(key, None)
        if await self.store.get_meta(AFFECTED_KEY) is not None:
            await self.store.set_meta(AFFECTED_KEY, None)

    async def _queue_users(
        self,
        user_ids: Iterable[str],
        cause: str,
        *,
        received_at: float | None = None,
        reconcile: bool = False,
        caused_by: Sequence[int] = (),
    ) -> None:
        """Journal user work. ``received_at`` carries the group notification's receipt time, so the
        apply lag is measured from it; ``reconcile`` marks drift found by a reconcile."""
        ids = sorted(set(user_ids))
        if not ids:
            return
        at = received_at if received_at is not None else time.time()
        payload: dict[str, Any] = {"cause": cause}
        if reconcile:
            payload["reconcile"] = True
        if caused_by:
            payload["caused_by"] = list(caused_by)[:100]
        items = [JournalItem("user", uid, at, payload, change_type="resync") for uid in ids]
        if reconcile:
            self.progress.expect(ids)
        if self.enqueue is not None:
            await self.enqueue(items)
        else:
            await self._sync_many(ids, cause, "reconcile" if reconcile else "groups delta")

    async def _sync_many(self, ids: Sequence[str], cause: str, origin: str) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        errors: list[BaseException] = []

        async def one(uid: str) -> None:
            async with sem:
                try:
                    await self.sync_user(uid, cause=cause, origin=origin, fresh=origin == "reconcile")
                except ReactorError as exc:
                    errors.append(exc)
                self.progress.settle(uid)

        await asyncio.gather(*(one(u) for u in ids))
        if errors:
            raise errors[0]

    # reconcile ------------------------------------------------------------------------------------
    async def reconcile(self, *, cause: str = "periodic reconcile") -> set[str]:
        """Repair what notifications missed: a users and a groups delta round; queue who changed."""
        started = time.perf_counter()
        try:
            with self.progress.run(cause, phase=READING_CHANGES, unit=""):
                return await self._reconcile(cause)
        except ReactorError as exc:
            self.last_reconcile_error = str(exc)
            raise
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, cause: str) -> set[str]:
        """The reconcile's rounds (see :meth:`reconcile`), reported into :attr:`progress`."""
        async with self._delta_lock:
            rounds = await self._store_group_changes()
            affected = set(rounds.affected)
            known = await self.store.member_users() | {m.entra_id for m in await self.store.mappings("user")}
            # Only the ids of known users are kept, page by page: a full round of a large tenant
            # holds none of its users' objects (bench/sync.py (b)).
            udelta = await self.reader.users_delta_ids(known.__contains__, commit=False)
            if udelta.full or rounds.full:
                affected |= known
            else:
                affected |= udelta.ids
            await self._index_for(affected, self.progress)
            await self._queue_users(affected, cause, reconcile=True)
            await self._groups_delta_done(rounds)
            await self.reader.commit(udelta)
        # What was changed by hand in AskCody: the users whose state there differs from the
        # state last applied (queued as reconcile work, which reads AskCody afresh).
        drifted = await self.drifted() - affected
        await self._queue_users(drifted, cause, reconcile=True)
        affected |= drifted
        self.last_reconcile_at = time.time()
        self.last_reconcile_error = None
        log.event("reconcile_done", cause=cause, users_queued=len(affected), full=udelta.full or rounds.full)
        return affected

    async def _index_for(self, users: Iterable[str], progress: Progress | None = None) -> None:
        """List AskCody's users once (:class:`ScimIndex`) when that costs fewer requests than looking
        up, one request each, the ``users`` the store knows nothing of (reported into ``progress``)."""
        known = {m.entra_id for m in await self.store.mappings("user")}
        unknown = len(set(users) - known)
        if unknown < 2:
            return
        total = await self.scim.count_users()
        groups = [sid for gid, sid in (await self.group_ids()).items() if self.settings.group(gid) is not None]
        if -(-total // PAGE_SIZE) + len(groups) >= unknown:
            return
        await self.build_index(progress)

    async def build_index(self, progress: Progress | None = None) -> ScimIndex:
        """One paged listing of AskCody's users and one read of each configured group it holds
        (counted in ``progress``, when given)."""
        at = time.time()
        listed: list[ScimUser] = []
        if progress is not None:
            progress.enter(LISTING)
        async for u in self.scim.list_users():
            listed.append(u)
            if progress is not None and len(listed) % PAGE_SIZE == 0:
                progress.advance(PAGE_SIZE)
        if progress is not None:
            progress.advance(len(listed) % PAGE_SIZE, total=len(listed))
        members: dict[str, frozenset[str]] = {}
        for gid, sid in (await self.group_ids()).items():
            if self.settings.group(gid) is None:
                continue
            try:
                members[sid] = (await self.scim.get_group(sid)).members
            except NotFoundError:
                members[sid] = frozenset()
        users = [
            dataclasses.replace(u, groups=frozenset(sid for sid, ids in members.items() if u.id in ids)) for u in listed
        ]
        self.index = ScimIndex.of(users, at)
        log.event("scim_users_listed", users=len(users), groups=len(members))
        return self.index

    def fresh_index(self) -> ScimIndex | None:
        """The listing of AskCody's users, while it is recent enough to match new users from."""
        if self.index is not None and time.time() - self.index.at < INDEX_SECONDS:
            return self.index
        return None

    async def drifted(self) -> set[str]:
        """The users we provisioned whose AskCody state differs from the one last applied, from one
        paged listing of AskCody's users and one read of each configured group AskCody holds (not a
        request per user)."""
        mappings = [m for m in await self.store.mappings("user") if m.scim_id]
        if not mappings:
            return set()
        group_ids = {gid: sid for gid, sid in (await self.group_ids()).items() if self.settings.group(gid) is not None}
        listed = (await self.build_index()).users
        out = set()
        for m in mappings:
            applied = applied_user(m, group_ids)
            have = listed.get(m.scim_id)
            if applied is None or have is None:
                out.add(m.entra_id)
                continue
            if _differs(applied, have) or have.groups != applied.groups:
                out.add(m.entra_id)
        if out:
            log.event("reconcile_drift_found", users=len(out))
        return out

    async def read_groups(
        self, progress: Progress | None = None, users: dict[str, EntraUser] | None = None
    ) -> tuple[dict[str, frozenset[str]], Nesting]:
        """Read from Graph every configured group and every group nested in one with ``nested = true``:
        the direct user members of each, and the nesting. Each group is read once (cycles end).
        ``progress`` counts the groups read of those known so far; ``users``, when given, receives
        the member users as the listings carry them (see :meth:`GraphReader.group_members`)."""
        members: dict[str, frozenset[str]] = {}
        nesting = Nesting()
        queue = deque(g.id for g in self.settings.groups if g.nested)
        queued = set(queue)
        to_read = queued | {g.id for g in self.settings.groups}

        async def read(gid: str) -> frozenset[str]:
            try:
                found = await self.reader.group_members(gid, users)
            except NotFoundError:
                found = GroupMembers(frozenset(), frozenset())
            members[gid] = found.user_ids
            nesting.replace(gid, found.group_ids)
            if progress is not None:
                progress.advance(total=len(to_read))
            return found.group_ids

        while queue:
            for child in sorted(await read(queue.popleft())):
                if child not in queued:
                    queued.add(child)
                    to_read.add(child)
                    queue.append(child)
        for g in self.settings.groups:
            if g.id not in members:
                await read(g.id)
        nesting.prune(self.settings)
        return members, nesting

    async def full_plan(self, *, cause: str = "dry run") -> list[UserPlan]:
        """Read every group in scope (nested ones included) and its members from Graph and plan every
        user (changes nothing, in AskCody or in the store). Reported into :attr:`progress`."""
        with self.progress.run(cause):
            users: dict[str, EntraUser] = {}
            members, nesting = await self.read_groups(self.progress, users)
            return await self._plan_all(members, nesting, remember=False, progress=self.progress, users=users)

    async def _plan_all(
        self, members: Mapping[str, frozenset[str]], nesting: Nesting, *, remember: bool = True,
        index: ScimIndex | None = None, progress: Progress | None = None, users: Mapping[str, EntraUser] | None = None,
    ) -> list[UserPlan]:
        """Plan every user in scope or known to the store; ``users``: those already read from Graph
        (the members listings), the others are read one by one."""
        direct: dict[str, set[str]] = {}
        for gid, uids in members.items():
            for uid in uids:
                direct.setdefault(uid, set()).add(gid)
        everyone = set(direct) | {m.entra_id for m in await self.store.mappings("user")}
        group_ids = await self.group_ids()
        scope = nesting.scope(self.settings)
        sem = asyncio.Semaphore(self.concurrency)
        if progress is not None:
            progress.enter(PLANNING, total=len(everyone))

        async def one(uid: str) -> UserPlan:
            known = users.get(uid) if users is not None else None
            async with sem:
                plan = await self.plan(
                    uid, groups=frozenset(direct.get(uid, ())), group_ids=group_ids, scope=scope, remember=remember,
                    fresh=True, index=index, user=known, read_user=known is None,
                )
            if progress is not None:
                progress.advance()
            return plan

        plans = await asyncio.gather(*(one(u) for u in sorted(everyone)))
        return [p for p in plans if p.operations]

    async def full_sync(self, *, cause: str = "reactor sync") -> list[UserPlan]:
        """Full reconcile: store Graph's memberships and nesting, plan every user, apply. Returns the
        plans applied. Reported into :attr:`progress`."""
        with self.progress.run(cause):
            return await self._full_sync(cause, self.progress)

    async def _full_sync(self, cause: str, progress: Progress) -> list[UserPlan]:
        users: dict[str, EntraUser] = {}  # as the members listings carry them: no read per user
        members, nesting = await self.read_groups(progress, users)
        async with self._delta_lock:
            before = Nesting.loads(await self.store.get_meta(NESTING_KEY))
            for gid in sorted(before.tracked(self.settings) - members.keys()):
                await self.store.replace_members(gid, [])
            for gid, uids in members.items():
                await self.store.replace_members(gid, sorted(uids))
            nesting.delta_ids = before.delta_ids
            await self.store.set_meta(NESTING_KEY, nesting.dumps())
        for gid, (count, deepest) in sorted(depths(nesting.scope(self.settings)).items()):
            if count:
                log.event("nested_groups", group_id=gid, nested_groups=count, depth=deepest)
        # Every user matched from one listing of AskCody, not a lookup (or a read) each.
        index = await self.build_index(progress)
        plans = await self._plan_all(members, nesting, index=index, progress=progress, users=users)
        failures: list[BaseException] = []
        sem = asyncio.Semaphore(self.concurrency)
        progress.enter(APPLYING, total=len(plans))

        async def apply(p: UserPlan) -> None:
            # Concurrently, so that the membership writes of many users share group PATCHes.
            async with sem:
                try:
                    RECONCILE_DRIFT.inc(len(await self.apply(p, cause=cause)))
                except ReactorError as exc:
                    failures.append(exc)
            progress.advance()

        await asyncio.gather(*(apply(p) for p in plans))
        if failures:
            raise failures[0]
        return plans


def _differs(applied: ScimUser, have: ScimUser) -> bool:
    """AskCody's user differs from the state last applied (attributes or ``active``)."""
    wanted = UserAttributes(
        user_name=applied.user_name, external_id=applied.external_id or "", display_name=applied.display_name,
        given_name=applied.given_name, family_name=applied.family_name, email=applied.email,
        cost_center=applied.cost_center,
    )
    return bool(attribute_changes(wanted, have)) or applied.active != have.active


def applied_user(mapping: ObjectMapping | None, group_ids: Mapping[str, str]) -> ScimUser | None:
    """The AskCody user as the reactor last applied it (its mapping's state), or None when the store
    does not know it well enough to plan from (no SCIM id yet, a state from before, a failed write)."""
    if mapping is None or not mapping.scim_id:
        return None
    attributes = mapping.state.get("attributes")
    active, groups = mapping.state.get("active"), mapping.state.get("groups")
    if not isinstance(attributes, dict) or not isinstance(active, bool) or not isinstance(groups, list):
        return None
    try:
        attrs = UserAttributes(**attributes)
    except TypeError:
        return None
    scim_groups = frozenset(group_ids[g] for g in groups if g in group_ids)
    if len(scim_groups) != len(groups):
        return None  # a group it was put in is no longer known to be in AskCody
    version = mapping.state.get("version")  # AskCody's ETag of that state, when it gave one
    return ScimUser(
        id=mapping.scim_id, user_name=attrs.user_name, external_id=attrs.external_id, active=active,
        display_name=attrs.display_name, given_name=attrs.given_name, family_name=attrs.family_name,
        email=attrs.email, cost_center=attrs.cost_center, groups=scim_groups,
        version=version if isinstance(version, str) and version else None,
    )
