"""The sync engine: dirty objects in, fresh Graph state read, planned, applied to AskCody.

- a dirty **user**: read the user from Graph, take its memberships in the groups in scope from the
  store (kept current by groups delta), find what AskCody holds, plan, apply;
- dirty **groups**: one groups-delta round serves every pending group notification
  (:mod:`reactor.sync.rounds`); the membership changes are stored and each affected user is queued
  as a dirty user (so that one user is still never synced by two workers at once). The round covers
  the configured groups and the groups nested in them (:mod:`reactor.sync.nesting`): a notification
  about a nested group carries that group's id, and its changes reach the users through the
  configured groups it is nested in;
- a **reconcile**: a users- and groups-delta round from the stored delta links, queueing every user
  in scope that changed; a full one when a delta token expired.

Audit: every operation applied or tried is kept (:class:`~reactor.store.base.AuditRow`) with its
cause: ``notification``, ``groups delta``, ``reconcile`` (from the journal entries of the unit) or
``cli`` (a direct call: ``reactor sync``, a dead-letter replay), the journal entries behind it and
its outcome (operations not attempted because an earlier one of the user failed have no row).

Failures: a transient error left after the client's retries raises, so the dispatcher keeps the
unit journaled and runs it again later (nothing is lost while AskCody is down); a permanent one goes
to the dead letters with the planned operations, the error and the attempts, and the unit is done.
Optional attributes AskCody refuses are left out (:mod:`reactor.sync.apply`): the user is
provisioned, a warning event ``scim_attributes_refused`` is logged, the write is audited as
``refused`` with what was left out (status page, ``reactor audit``), counted in ``reactor_scim_attributes_refused_total`` and
kept in :attr:`SyncEngine.attribute_failures` until the user converges.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from reactor import log
from reactor.config import Settings
from reactor.domain.model import EntraUser, ScimUser, UserFacts
from reactor.domain.operations import (
    CreateUser,
    DeleteUser,
    EnsureGroup,
    Operation,
    UpdateUser,
    as_json,
    describe,
    entra_user_of,
    kind,
)
from reactor.domain.work import WorkUnit
from reactor.errors import ConflictError, NotFoundError, TransientError
from reactor.graph.reader import GraphReader
from reactor.metrics import APPLY_LAG_SECONDS, ATTRIBUTES_REFUSED, DEAD_LETTERED, RECONCILE_DRIFT
from reactor.scim.client import AskCodyClient
from reactor.scim.resources import ATTRIBUTE_PATHS
from reactor.store.base import AuditOutcome, AuditRow, JournalItem, ObjectMapping, Store
from reactor.sync.apply import GroupCommit, Refusal, apply_operations
from reactor.sync.nesting import Nesting, Path, configured_paths
from reactor.sync.planner import UserPlan, current_attributes, owned, plan_user, user_attributes
from reactor.sync.progress import Progress
from reactor.sync.rounds import NESTING_KEY, GroupRounds, ScimIndex, applied_user

Enqueue = Callable[[Sequence[JournalItem]], Awaitable[None]]
LifecycleHandler = Callable[[WorkUnit], Awaitable[None]]
MAX_ATTRIBUTE_FAILURES = 1000
Scope = Mapping[str, Mapping[str, Path]]
FULL_SYNC_CONCURRENCY = 32
"""Users planned and applied at once by ``reactor sync`` and the rounds without a journal. AskCody's
rate limit bounds the work, not this: more at once costs idle coroutines, and lets a membership PATCH
carry the members of more users (a group commit, :class:`~reactor.sync.apply.GroupCommit`); with 8, an
initial sync of 2,000 users sent a PATCH per 5 members (1.20 requests per user, bench/sync.py (c))."""


class SyncEngine(GroupRounds):
    """Turns dirty objects into SCIM writes. ``enqueue`` journals follow-up user work durably;
    ``on_lifecycle`` handles units of Graph lifecycle events (subscriptions), when there are any;
    ``progress`` is where a reconcile or full sync reports how far it has come."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        reader: GraphReader,
        scim: AskCodyClient,
        *,
        enqueue: Enqueue | None = None,
        on_lifecycle: LifecycleHandler | None = None,
        concurrency: int = FULL_SYNC_CONCURRENCY,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.reader = reader
        self.scim = scim
        self.enqueue = enqueue
        self.concurrency = concurrency
        self.on_lifecycle = on_lifecycle
        self.last_reconcile_at: float | None = None
        self.last_reconcile_error: str | None = None
        self.attribute_failures: dict[str, str] = {}
        """Entra user id → the optional attributes AskCody refused at the user's last write, and why
        (a current failure: the user is provisioned without them; gone once the user converges)."""
        self._group_lock = asyncio.Lock()
        self.index: ScimIndex | None = None
        """The last listing of AskCody's users (a reconcile, a groups round with many new users)."""
        self.progress = progress if progress is not None else Progress()
        """How far the running reconcile or full sync has come (the status page, ``reactor sync``)."""
        self.members = GroupCommit(scim)
        """Membership writes of concurrent units batched into shared group PATCHes."""
        self._group_names: dict[str, str] = {}
        self._scope_cache: tuple[str | None, Scope] = (None, Nesting().scope(settings))
        # Delta rounds are read, stored and queued one at a time, and their deltaLinks kept only
        # after that: a crash in between reads the same changes again instead of losing them, and a
        # reconcile and a groups round never apply overlapping rounds in the wrong order.
        self._delta_lock = asyncio.Lock()

    # the dispatcher's handler ---------------------------------------------------------------------
    async def handle(self, unit: WorkUnit) -> None:
        cause, origin, seqs, from_reconcile, any_reconciled = _unit_facts(unit)
        if unit.kind == "user":
            for uid in unit.object_ids:
                # A reconcile's unit reads AskCody afresh: it repairs what was changed there by hand.
                applied = await self.sync_user(uid, cause=cause, seqs=seqs, origin=origin, fresh=from_reconcile)
                if applied and from_reconcile:
                    RECONCILE_DRIFT.inc(len(applied))
                elif applied and unit.entries:
                    # From the (oldest) notification's receipt to the change applied in AskCody.
                    APPLY_LAG_SECONDS.observe(max(0.0, time.time() - unit.oldest_received_at))
                if any_reconciled:
                    self.progress.settle(uid)
        elif unit.kind == "group":
            await self.groups_round(
                cause=cause, received_at=unit.oldest_received_at, caused_by=[e.seq for e in unit.entries]
            )
        elif unit.kind == "reconcile":
            await self.reconcile(cause=cause)
        elif unit.kind == "lifecycle":
            if self.on_lifecycle is not None:
                await self.on_lifecycle(unit)
        else:
            log.event("unit_ignored", level="warning", kind=unit.kind)

    # one user -------------------------------------------------------------------------------------
    async def group_ids(self) -> dict[str, str]:
        """Entra group id → AskCody SCIM group id, for the groups AskCody is known to hold."""
        return {m.entra_id: m.scim_id for m in await self.store.mappings("group")}

    async def scope(self) -> Scope:
        """Tracked group → the configured groups it puts its direct members in, with the paths (from
        the nesting kept in the store)."""
        raw = await self.store.get_meta(NESTING_KEY)
        if raw != self._scope_cache[0]:
            self._scope_cache = (raw, Nesting.loads(raw).scope(self.settings))
        return self._scope_cache[1]

    async def plan(self, entra_id: str, *, groups: frozenset[str] | None = None, user: EntraUser | None = None,
                   read_user: bool = True, group_ids: dict[str, str] | None = None,
                   scope: Scope | None = None, remember: bool = True, fresh: bool | None = None,
                   index: ScimIndex | None = None) -> UserPlan:
        """Read fresh state (Graph, store) and plan one user. Changes nothing in AskCody.

        What AskCody holds is taken from the last state applied (the user's mapping) when the store
        knows it, without asking AskCody; AskCody is read when the store knows nothing of the user,
        or with ``fresh`` (default: when not ``remember``, so a dry run shows what AskCody holds).
        ``index``: a listing of AskCody's users to match from instead (a full sync).

        ``groups``: the groups the user is a direct member of (default: from the store), configured or
        nested in configured ones; ``scope`` the nesting they are read through (default: the store's).
        ``remember``: keep the AskCody user found (or forget a mapping gone stale) in the store's
        mappings; ``False`` for a dry run, which writes nothing at all.
        """
        if read_user:
            user = await self.reader.get_user(entra_id)
        if groups is None:
            groups = frozenset(await self.store.groups_of(entra_id))
        paths = configured_paths(groups, scope if scope is not None else await self.scope())
        facts = UserFacts(entra_id=entra_id, user=user, groups=frozenset(paths))
        mapping = await self.store.get_mapping("user", entra_id)
        if not facts.groups and mapping is None:
            # Never provisioned by us and not in scope: leave it alone without asking AskCody.
            return UserPlan(entra_id, facts, None, paths=paths)
        known = group_ids if group_ids is not None else await self.group_ids()
        read_fresh = not remember if fresh is None else fresh
        current = None if read_fresh else applied_user(mapping, known)
        from_state = current is not None
        if index is None and mapping is None and remember and not read_fresh:
            index = self.fresh_index()
        if index is not None:
            # Matched from the listing: no request. One that misses is created (a 409 then finds and
            # adopts a user made since); one that hits is planned like a stale-able state.
            current = index.users.get(mapping.scim_id) if mapping is not None and mapping.scim_id else None
            if current is None:
                current = index.find(entra_id, user.user_principal_name if user else None, user.mail if user else None)
            from_state = current is not None
            if current is not None and remember and (mapping is None or mapping.scim_id != current.id):
                await self.store.put_mapping(ObjectMapping("user", entra_id, current.id, {}, time.time()))
        elif current is None:
            current = await self._current(entra_id, user, mapping, remember=remember)
        names = await self.group_names(facts.groups - known.keys())
        ops = plan_user(facts, current, self.settings, group_ids=known, group_names=names)
        return UserPlan(entra_id, facts, current, ops, known_as=_applied_user_name(mapping), paths=paths,
                        from_state=from_state, state_kept=mapping is not None and bool(mapping.state), group_ids=known)

    async def group_names(self, group_ids: Iterable[str]) -> dict[str, str]:
        """The Entra displayName of each configured group without ``askcody_group`` among ``group_ids``
        (the name such a group gets in AskCody), read from Graph once and kept.

        A name that cannot be read raises :class:`~reactor.errors.TransientError`, so the unit is
        tried again later instead of creating the group under its GUID.
        """
        out: dict[str, str] = {}
        for gid in group_ids:
            mapping = self.settings.group(gid)
            if mapping is None or mapping.askcody_group:
                continue
            name = self._group_names.get(gid)
            if name is None:
                group = await self.reader.get_group(gid)
                if group is None or not group.display_name:
                    raise TransientError(f"the displayName of Entra group {gid} could not be read")
                name = self._group_names[gid] = group.display_name
            out[gid] = name
        return out

    async def _current(
        self, entra_id: str, user: EntraUser | None, mapping: ObjectMapping | None, *, remember: bool = True
    ) -> ScimUser | None:
        if mapping is not None and mapping.scim_id:
            try:
                return await self.scim.get_user(mapping.scim_id)
            except NotFoundError:
                # Gone from AskCody (deleted by hand?): forget it and look again by externalId, userName, e-mail.
                if remember:
                    await self.store.delete_mapping("user", entra_id)
        found = await self.scim.find_user(
            entra_id, user.user_principal_name if user else None, user.mail if user else None
        )
        if not remember:
            return found
        if found is not None:
            await self.store.put_mapping(ObjectMapping("user", entra_id, found.id, {}, time.time()))
        elif mapping is not None and not mapping.scim_id:
            await self.store.delete_mapping("user", entra_id)  # the create it announced never happened
        return found

    def readable(self, op: Operation, who: str) -> str:
        """``describe(op)`` with the user's name and the AskCody group name in place of Entra ids."""
        text = describe(op)
        user_id = entra_user_of(op)
        if user_id and who:
            text = text.replace(f"user {user_id}", f"user {who}")
        for g in self.settings.groups:
            if g.id in text:
                text = text.replace(f"group {g.id}", f"group {g.askcody_group or self._group_names.get(g.id) or g.id!r}")
        return text

    async def _ensure_groups(
        self, wanted: Sequence[EnsureGroup], ensured: list[EnsureGroup], planned: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The known AskCody groups, after creating the ``wanted`` ones that are missing (added to ``ensured``).
        With nothing wanted, ``planned`` (the groups a plan was made with, which its operations name)
        when given, without reading them again.

        One lock around it: two workers that both see a group missing must not create it twice
        (AskCody need not refuse a second group with the same externalId).
        """
        if not wanted:
            return planned if planned is not None else await self.group_ids()
        async with self._group_lock:
            known = await self.group_ids()
            for op in wanted:
                if op.entra_group_id in known:
                    continue
                group = await self.scim.ensure_group(op.entra_group_id, op.display_name)
                known[op.entra_group_id] = group.id
                await self.store.put_mapping(ObjectMapping("group", op.entra_group_id, group.id, {}, time.time()))
                ensured.append(op)
                log.event("scim_applied", operation=describe(op), entra_group_id=op.entra_group_id, scim_id=group.id)
        return known

    async def sync_user(
        self, entra_id: str, *, cause: str, seqs: Sequence[int] = (), origin: str = "cli", fresh: bool = False
    ) -> list[Operation]:
        """Bring one user in AskCody in line with Entra. Returns the operations applied.

        ``cause`` says why in words, ``origin`` what kind of cause it is (the audit's ``cause``);
        ``fresh``: read what AskCody holds instead of trusting the last state applied."""
        plan = await self.plan(entra_id, fresh=fresh)
        return await self.apply(plan, cause=cause, seqs=seqs, origin=origin)

    async def apply(
        self, plan: UserPlan, *, cause: str, seqs: Sequence[int] = (), origin: str = "cli"
    ) -> list[Operation]:
        if not plan.operations:
            self.attribute_failures.pop(plan.entra_id, None)
            if plan.current is not None and not plan.from_state:
                # Read from AskCody and nothing to do: keep what it holds as the state to plan from.
                mapping = await self.store.get_mapping("user", plan.entra_id)
                state = _applied_state(plan, plan.current.version)
                if mapping is not None and mapping.scim_id == plan.current.id and mapping.state != state:
                    await self.store.put_mapping(ObjectMapping("user", plan.entra_id, plan.current.id, state, time.time()))
            return []
        ensured: list[EnsureGroup] = []
        try:
            known = await self._ensure_groups(
                [op for op in plan.operations if isinstance(op, EnsureGroup)], ensured, plan.group_ids
            )
        finally:
            if ensured:
                await self.store.record_audit(
                    [self._audit(op, plan, "", cause=cause, origin=origin, seqs=seqs) for op in ensured]
                )
        operations = [op for op in plan.operations if not isinstance(op, EnsureGroup)]
        if plan.current is None and any(isinstance(op, CreateUser) for op in operations):
            # A mapping without SCIM id, written before the create: when the create's outcome is
            # unknown (answer lost, retries spent, process killed) and the user leaves scope before
            # the next attempt, the next plan still looks for it in AskCody and deprovisions it.
            await self.store.put_mapping(ObjectMapping("user", plan.entra_id, "", {"pending": "create"}, time.time()))
        elif plan.state_kept and plan.current is not None and operations:
            # Set aside before the writes: a unit interrupted between AskCody's answer and the state
            # kept below (its replica killed, a stop that cancels it) leaves the state unknown, and the
            # next plan reads AskCody instead of trusting a picture these writes may have changed.
            await self.store.put_mapping(ObjectMapping("user", plan.entra_id, plan.current.id, {}, time.time()))
        result = await apply_operations(self.scim, operations, group_ids=known, members=self.members,
                                        versions=_expected_versions(plan))
        for gid, scim_gid in result.group_ids.items():
            if known.get(gid) != scim_gid:
                await self.store.put_mapping(ObjectMapping("group", gid, scim_gid, {}, time.time()))
        stale = _stale(result.failures.get(plan.entra_id)) if plan.from_state else None
        if stale is not None:
            # Planned from the last state applied, and AskCody says it no longer holds (404) or holds
            # otherwise (409, 412: edited there since, its version is no longer the one kept): read it
            # afresh and plan once more.
            log.event("scim_state_stale", entra_id=plan.entra_id, status=stale, cause=cause)
            await self.store.record_audit(
                [self._audit(op, plan, "", cause=cause, origin=origin, seqs=seqs) for op in result.applied]
            )
            again = await self.plan(plan.entra_id, user=plan.facts.user, read_user=False, fresh=True)
            return list(result.applied) + await self.apply(again, cause=cause, seqs=seqs, origin=origin)
        scim_id = result.user_ids.get(plan.entra_id) or (plan.current.id if plan.current else None)
        if any(isinstance(op, DeleteUser) for op in result.applied):
            await self.store.delete_mapping("user", plan.entra_id)
        elif scim_id is not None and plan.entra_id not in result.failures:
            # The state the next plan starts from. Attributes AskCody refused are not in it as they
            # are wanted: that plan reads AskCody afresh, as it does after a failure.
            version = result.versions.get(plan.entra_id, plan.current.version if plan.current else None)
            state = {} if result.refused else _applied_state(plan, version)
            await self.store.put_mapping(ObjectMapping("user", plan.entra_id, scim_id, state, time.time()))
        elif scim_id is not None:
            # Failed part way: what AskCody holds is no longer known; the next plan reads it.
            await self.store.put_mapping(ObjectMapping("user", plan.entra_id, scim_id, {}, time.time()))
        who = plan.who
        refused = {r.entra_id: self._refused(r, who, cause) for r in result.refused}
        rows: list[AuditRow] = []
        for op in result.applied:
            text = self.readable(op, who)
            log.event("scim_applied", entra_id=plan.entra_id, operation=text, cause=cause, journal_seqs=list(seqs))
            refusal = refused.get(plan.entra_id) if isinstance(op, CreateUser | UpdateUser) else None
            outcome: AuditOutcome = "refused" if refusal else "applied"
            rows.append(self._audit(op, plan, refusal or "", cause=cause, origin=origin, seqs=seqs, outcome=outcome))
        for op in operations:
            error = result.failures.get(entra_user_of(op) or "")
            if error is not None and op not in result.applied and op not in result.skipped:
                rows.append(self._audit(op, plan, f"{type(error).__name__}: {error}", cause=cause, origin=origin,
                                        seqs=seqs, outcome="failed"))
        await self.store.record_audit(rows)
        if not result.refused and not result.failures:
            self.attribute_failures.pop(plan.entra_id, None)
        if not result.failures:
            return list(result.applied)
        errors = list(result.failures.values())
        transient = [e for e in errors if isinstance(e, TransientError)]
        if transient:
            # AskCody is unwell: keep the change journaled, the dispatcher runs it again later.
            raise transient[0]
        error = errors[0]
        dl = await self.store.add_dead_letter(
            "user",
            plan.entra_id,
            {"cause": cause, "operations": [as_json(op) for op in plan.operations], "journal_seqs": list(seqs)},
            f"{type(error).__name__}: {error}",
            [{"at": time.time(), "error": str(e), "type": type(e).__name__,
              "status": getattr(e, "status", None)} for e in errors],
        )
        DEAD_LETTERED.inc()
        log.event("dead_lettered", level="error", entra_id=plan.entra_id, dead_letter_id=dl, error=str(error), cause=cause)
        return list(result.applied)

    def _audit(self, op: Operation, plan: UserPlan, error: str, *, cause: str, origin: str, seqs: Sequence[int],
               outcome: AuditOutcome = "applied") -> AuditRow:
        user = entra_user_of(op)
        who = plan.who if user is not None else ""
        mail = (plan.facts.user.mail if plan.facts.user else None) or (plan.current.email if plan.current else None)
        return AuditRow(
            at=time.time(), entra_id=user or (op.entra_group_id if isinstance(op, EnsureGroup) else ""),
            upn="" if who == user else who, op=kind(op), operation=self.readable(op, who), cause=origin, reason=cause,
            outcome=outcome, error=error, journal_seqs=tuple(seqs), mail=(mail or "") if user is not None else "",
        )

    def _refused(self, refusal: Refusal, who: str, cause: str) -> str:
        """Log and keep a refusal of optional attributes; what was left out and why, for the audit."""
        paths = [ATTRIBUTE_PATHS[name] for name in refusal.attributes]
        written = f"written without {', '.join(paths)}: AskCody refused them ({refusal.error})"
        text = f"user {who} {written}"
        for name in refusal.attributes:
            ATTRIBUTES_REFUSED.labels(name).inc()
        log.event(
            "scim_attributes_refused", level="warning", entra_id=refusal.entra_id, attributes=paths,
            error=str(refusal.error), cause=cause,
        )
        self.attribute_failures.pop(refusal.entra_id, None)
        self.attribute_failures[refusal.entra_id] = text
        while len(self.attribute_failures) > MAX_ATTRIBUTE_FAILURES:
            self.attribute_failures.pop(next(iter(self.attribute_failures)))
        return written



def _applied_state(plan: UserPlan, version: str | None) -> dict[str, Any]:
    """What AskCody now holds for the user, as far as the mapping decides it (kept with the mapping,
    and planned from next time): in scope, Entra's attributes, ``active`` = accountEnabled and the
    groups in scope; out of scope, the attributes AskCody held (left as they were), inactive when we
    deprovisioned it (a user we own), and no configured group. ``version``: AskCody's version (ETag)
    of the user in that state, kept when known (the next writes' ``If-Match``)."""
    user = plan.facts.user
    in_scope = user is not None and user.state == "present" and bool(plan.facts.groups)
    if in_scope and user is not None:
        state = {"attributes": user_attributes(user).as_dict(), "active": user.account_enabled,
                 "groups": sorted(plan.facts.groups)}
    elif plan.current is None:
        return {}
    else:
        state = {"attributes": current_attributes(plan.current),
                 "active": False if owned(plan.facts, plan.current) else plan.current.active, "groups": []}
    return state if version is None else {**state, "version": version}


def _expected_versions(plan: UserPlan) -> dict[str, str]:
    """The version the user's writes expect AskCody to hold (``If-Match``): the one kept with the state
    the plan was made from. A plan read from AskCody writes without: what it read is a moment old, and
    a refusal there would have nothing fresher to plan from (the stale path reads once, not again)."""
    if plan.from_state and plan.current is not None and plan.current.version:
        return {plan.entra_id: plan.current.version}
    return {}


STALE_STATUSES = (404, 409, 412)


def _stale(error: BaseException | None) -> int | None:
    """The status of a failed write that says the state planned from is stale, else None."""
    status = getattr(error, "status", None)
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    return status if status in STALE_STATUSES else None


def _applied_user_name(mapping: ObjectMapping | None) -> str:
    """The userName kept with the mapping when the user was last applied (see :func:`_applied_state`)."""
    attributes = mapping.state.get("attributes") if mapping is not None else None
    name = attributes.get("user_name") if isinstance(attributes, dict) else None
    return name if isinstance(name, str) else ""


AUDIT_CAUSES = ("notification", "groups delta", "reconcile")


def _unit_facts(unit: WorkUnit) -> tuple[str, str, list[int], bool, bool]:
    """What a unit says of itself, in one pass over its entries (a flood gives a unit hundreds): its
    cause in words (the groups-delta or reconcile causes its entries carry, else how many
    notifications of which change types); for user work its origin, the audit's cause (the kinds of its entries: a
    notification; user work queued by a groups-delta round, or by a reconcile); the journal entries
    behind it with those of the group notifications that queued it; and whether all or any of them
    come from a reconcile."""
    kinds: set[str] = set()
    causes: set[str] = set()
    found: set[str] = set()
    seqs: set[int] = set()
    reconciled = 0
    for e in unit.entries:
        seqs.add(e.seq)
        kinds.add(e.change_type or "change")
        payload = e.payload
        if not isinstance(payload, dict):
            found.add("notification")
            continue
        cause = payload.get("cause")
        if cause:
            causes.add(str(cause))
        if payload.get("reconcile"):
            reconciled += 1
            found.add("reconcile")
        else:
            found.add("groups delta" if cause else "notification")
        caused_by = payload.get("caused_by")
        if caused_by:
            seqs.update(int(s) for s in caused_by)
    n = len(unit.entries)
    text = "; ".join(sorted(causes)) if causes else f"{n} notification(s) ({', '.join(sorted(kinds))})"
    origin = ", ".join(c for c in AUDIT_CAUSES if c in found) or "notification"
    return text, origin, sorted(seqs), reconciled == n, reconciled > 0


def plan_as_json(plans: Sequence[UserPlan]) -> dict[str, Any]:
    """The planned operations of ``reactor sync --dry-run --json``."""
    ops = [dict(as_json(op), entra_user=p.entra_id) for p in plans for op in p.operations]
    counts: dict[str, int] = {}
    for o in ops:
        counts[o["op"]] = counts.get(o["op"], 0) + 1
    return {"operations": ops, "counts": counts, "users": len(plans)}
