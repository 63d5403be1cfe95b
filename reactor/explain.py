"""One person at a time: ``reactor sync --user USER`` (provision on demand) and ``reactor explain USER``.

Both find the person in Entra (object id, userPrincipalName or mail), read the configured groups and
the groups nested in them fresh from Graph, and plan that one user as the engine does. ``sync --user``
prints the plan, then applies it (``--dry-run``: writes nothing, neither in AskCody nor in the store)
and the outcome of each operation. ``explain`` writes nothing: it says what AskCody should hold for
the person and why (the groups and nesting paths that put them in scope, or why they are out), what
AskCody holds now and the difference, the recent changes applied for them and their dead letters.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reactor.commands import _json, _out, opened
from reactor.config import Settings
from reactor.domain.model import EntraUser, ScimUser
from reactor.domain.operations import EnsureGroup, Operation, as_json
from reactor.errors import NotFoundError, ReactorError
from reactor.graph.reader import GUID
from reactor.store import Store
from reactor.sync.engine import SyncEngine
from reactor.sync.planner import UserPlan, group_display_name, user_attributes

EXIT_OK, EXIT_FAILURE = 0, 1
SYNC_USER_CAUSE = "reactor sync --user"
RECENT_CHANGES = 10
"""How many of the person's latest applied changes ``explain`` shows."""
CHANGES_LOOKED_AT = 1000
"""How far back in the store's change log ``explain`` looks for them."""


@dataclass
class Person:
    """One person, planned from fresh Graph state."""

    query: str
    entra_id: str
    user: EntraUser | None
    plan: UserPlan
    direct: dict[str, frozenset[str]]
    """Every tracked group as Graph holds it now → its direct user members."""
    names: dict[str, str]
    """Entra group id → displayName, for the groups on the person's paths."""

    @property
    def who(self) -> str:
        return self.plan.who

    @property
    def in_scope(self) -> bool:
        return self.user is not None and self.user.state == "present" and bool(self.plan.facts.groups)


async def _find(engine: SyncEngine, store: Store, query: str) -> tuple[str, EntraUser | None] | None:
    """The person's Entra id and user; a GUID Graph no longer knows is still a person (to deprovision),
    and so is a name the store last applied for a user Graph no longer finds. None: nobody."""
    user = await engine.reader.find_user(query)
    if user is not None:
        return user.id, user
    if GUID.fullmatch(query):
        return query.lower(), None
    wanted = query.casefold()
    for mapping in await store.mappings("user"):
        attributes = mapping.state.get("attributes")
        if isinstance(attributes, dict) and wanted in {
            str(attributes.get("user_name") or "").casefold(), str(attributes.get("email") or "").casefold()
        }:
            return mapping.entra_id, None
    return None


async def _person(engine: SyncEngine, store: Store, query: str) -> Person | None:
    found = await _find(engine, store, query)
    if found is None:
        return None
    entra_id, user = found
    members, nesting = await engine.read_groups()
    direct = frozenset(gid for gid, uids in members.items() if entra_id in uids)
    plan = await engine.plan(
        entra_id, groups=direct, user=user, read_user=False, scope=nesting.scope(engine.settings), remember=False
    )
    names: dict[str, str] = {}
    for gid in sorted({g for path in plan.paths.values() for g in path}):
        group = await engine.reader.get_group(gid)
        names[gid] = group.display_name if group is not None and group.display_name else gid
    return Person(query, entra_id, user, plan, dict(members), names)


def _entra_facts(user: EntraUser | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "state": user.state, "enabled": user.account_enabled, "user_principal_name": user.user_principal_name,
        "mail": user.mail, "display_name": user.display_name, "given_name": user.given_name,
        "surname": user.surname, "cost_center": user.cost_center,
    }


def _entra_line(p: Person) -> str:
    u = p.user
    if u is None:
        return f"Entra: no user {p.entra_id} (deleted, soft or for good, or never there)"
    if u.state != "present":
        return f"Entra: {p.entra_id} is {u.state.replace('_', '-')}"
    facts = ", ".join(
        f"{name} {value!r}" for name, value in (
            ("mail", u.mail), ("displayName", u.display_name), ("givenName", u.given_name),
            ("surname", u.surname), ("cost center", u.cost_center),
        )
    )
    return f"Entra: {u.user_principal_name} (id {u.id}), {'enabled' if u.account_enabled else 'DISABLED'}; {facts}"


def _paths(p: Person, settings: Settings, group_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each configured group that puts the person in scope, with the path down to them."""
    person = (p.user.display_name if p.user else None) or p.who
    out = []
    for gid, path in sorted(p.plan.paths.items()):
        mapping = settings.group(gid)
        chain = [person, *(p.names.get(g, g) for g in reversed(path))]
        out.append({
            "group_id": gid, "askcody_group": group_display_name(gid, settings, group_names),
            "grants": mapping.grants if mapping else None, "depth": len(path) - 1,
            "path": [{"id": g, "name": p.names.get(g, g)} for g in path], "path_text": " ∈ ".join(chain),
        })
    return out


def _print_plan(engine: SyncEngine, p: Person, outcomes: Mapping[int, str] | None = None) -> None:
    ops = p.plan.operations
    _out(f"Plan: {len(ops)} operations" + ("" if ops else " (AskCody is in line)"))
    for i, op in enumerate(ops):
        prefix = f"{outcomes[i]:<12}" if outcomes is not None else "-"
        _out(f"  {prefix} {engine.readable(op, p.who)}")


def _op_json(engine: SyncEngine, op: Operation, who: str, outcome: str) -> dict[str, Any]:
    return dict(as_json(op), readable=engine.readable(op, who), outcome=outcome)


# reactor sync --user ------------------------------------------------------------------------------
async def sync_user_command(settings: Settings, query: str, *, dry_run: bool, as_json: bool) -> int:
    """``reactor sync --user USER [--dry-run] [--json]``: plan and apply one person now."""
    async with opened(settings) as (store, clients):
        assert clients is not None
        engine = SyncEngine(settings, store, clients.reader, clients.scim)
        p = await _person(engine, store, query)
        if p is None:
            sys.stderr.write(f"reactor: no Entra user with object id, userPrincipalName or mail {query!r}\n")
            return EXIT_FAILURE
        group_names = await engine.group_names(p.plan.paths.keys())
        if not as_json:
            _out(_entra_line(p))
            _print_scope(p, settings, group_names)
        if dry_run:
            if as_json:
                _json(_sync_json(engine, p, group_names, ["planned"] * len(p.plan.operations), dry_run=True))
            else:
                _print_plan(engine, p)
                _out("Dry run: nothing applied")
            return EXIT_OK
        if not as_json:
            _print_plan(engine, p)
        outcomes, error = await _apply(engine, store, p)
        dead = [d.id for d in await store.dead_letters() if d.kind == "user" and d.object_id == p.entra_id]
        if as_json:
            _json(dict(_sync_json(engine, p, group_names, outcomes, dry_run=False), error=error, dead_letters=dead))
        else:
            _out("Applied:" if p.plan.operations else "Nothing to apply")
            for op, outcome in zip(p.plan.operations, outcomes, strict=True):
                _out(f"  {outcome:<12} {engine.readable(op, p.who)}")
            if error:
                _out(f"Failed: {error}" + (f" (dead letter {', '.join(map(str, dead))})" if dead else ""))
        return EXIT_OK if error is None else EXIT_FAILURE


async def _apply(engine: SyncEngine, store: Store, p: Person) -> tuple[list[str], str | None]:
    """Keep the person's memberships as Graph holds them now, apply the plan; each operation's
    outcome and the error, if any."""
    stored = await store.groups_of(p.entra_id)
    for gid, uids in sorted(p.direct.items()):
        if (p.entra_id in uids) != (gid in stored):
            added = [p.entra_id] if p.entra_id in uids else []
            await store.update_members(gid, added, [] if added else [p.entra_id])
    before = {d.id for d in await store.dead_letters()}
    try:
        applied = await engine.apply(p.plan, cause=SYNC_USER_CAUSE)
    except ReactorError as exc:
        return ["not applied"] * len(p.plan.operations), f"{type(exc).__name__}: {exc}"
    fresh = [d for d in await store.dead_letters() if d.id not in before]
    # The groups are ensured first (a failure there raises); the rest is applied in order until one fails.
    outcomes = ["applied" if op in applied or isinstance(op, EnsureGroup) else "failed" for op in p.plan.operations]
    return outcomes, (fresh[0].error if fresh else None)


def _print_scope(p: Person, settings: Settings, group_names: Mapping[str, str]) -> None:
    paths = _paths(p, settings, group_names)
    if p.in_scope:
        _out("In scope through:")
        for path in paths:
            _out(f"  {path['askcody_group']} (grants {path['grants']}): {path['path_text']}")
    else:
        _out("Out of scope: " + "; ".join(_reasons(p, settings)))


def _sync_json(
    engine: SyncEngine, p: Person, group_names: Mapping[str, str], outcomes: list[str], *, dry_run: bool
) -> dict[str, Any]:
    return {
        "query": p.query, "entra_id": p.entra_id, "entra": _entra_facts(p.user), "in_scope": p.in_scope,
        "groups": _paths(p, engine.settings, group_names), "dry_run": dry_run,
        "operations": [_op_json(engine, op, p.who, o) for op, o in zip(p.plan.operations, outcomes, strict=True)],
    }


# reactor explain ----------------------------------------------------------------------------------
def _reasons(p: Person, settings: Settings) -> list[str]:
    """Why the person has the access they have (or none)."""
    u = p.user
    if u is None:
        return ["not in Entra (deleted, soft or for good, or never there)"]
    if u.state != "present":
        return [f"{u.state.replace('_', '-')} in Entra"]
    if not p.plan.facts.groups:
        configured = ", ".join(repr(g.askcody_group or g.id) for g in settings.groups) or "none configured"
        return [f"in no configured group, directly or through nested groups (configured: {configured})"]
    count = len(p.plan.facts.groups)
    reasons = [f"in {count} configured group{'s' if count > 1 else ''}, directly or through nested groups"]
    if not u.account_enabled:
        kept = "memberships kept" if settings.askcody.deprovision == "disable" else "memberships kept, not deleted"
        reasons.append(f"accountEnabled is false in Entra: AskCody holds the user inactive ({kept})")
    return reasons


def _access(p: Person) -> str:
    if not p.in_scope:
        return "none"
    return "active" if p.user is not None and p.user.account_enabled else "inactive"


def _expected(p: Person, settings: Settings, group_names: Mapping[str, str], actual: ScimUser | None) -> dict[str, Any] | None:
    """The SCIM state the planner aims at: None when AskCody should hold no user."""
    if p.in_scope and p.user is not None:
        return {
            **user_attributes(p.user).as_dict(), "active": p.user.account_enabled,
            "groups": sorted(group_display_name(g, settings, group_names) for g in p.plan.facts.groups),
        }
    if actual is None or (actual.external_id or "").lower() != p.entra_id.lower():
        return None  # nothing to hold, or a user the reactor does not own: left alone apart from our groups
    if settings.askcody.deprovision == "delete":
        return None
    return {"external_id": p.entra_id, "user_name": actual.user_name, "active": False, "groups": []}


async def _actual(engine: SyncEngine, store: Store, p: Person) -> tuple[ScimUser | None, dict[str, Any] | None]:
    current = p.plan.current
    if current is None:
        u = p.user
        current = await engine.scim.find_user(p.entra_id, u.user_principal_name if u else None, u.mail if u else None)
    if current is None:
        return None, None
    by_scim = {m.scim_id: m.entra_id for m in await store.mappings("group")}
    names = []
    for sid in sorted(current.groups):
        gid = by_scim.get(sid)
        if gid is not None and engine.settings.group(gid) is not None:
            names.append(group_display_name(gid, engine.settings, await engine.group_names([gid])))
            continue
        try:
            names.append((await engine.scim.get_group(sid)).display_name)
        except NotFoundError:
            continue
    return current, {
        "scim_id": current.id, "user_name": current.user_name, "external_id": current.external_id,
        "display_name": current.display_name, "given_name": current.given_name, "family_name": current.family_name,
        "email": current.email, "cost_center": current.cost_center, "active": current.active, "groups": sorted(names),
    }


async def explain_command(settings: Settings, query: str, *, as_json: bool) -> int:
    """``reactor explain USER [--json]``: what AskCody should hold for this person, and why."""
    async with opened(settings) as (store, clients):
        assert clients is not None
        engine = SyncEngine(settings, store, clients.reader, clients.scim)
        p = await _person(engine, store, query)
        if p is None:
            sys.stderr.write(f"reactor: no Entra user with object id, userPrincipalName or mail {query!r}\n")
            return EXIT_FAILURE
        report = await _explanation(engine, store, p)
    _json(report) if as_json else _print_explanation(report)
    return EXIT_OK


async def _explanation(engine: SyncEngine, store: Store, p: Person) -> dict[str, Any]:
    settings = engine.settings
    group_names = await engine.group_names(p.plan.facts.groups)
    current, actual = await _actual(engine, store, p)
    changes = [c for c in await store.recent_changes(CHANGES_LOOKED_AT) if c.entra_id == p.entra_id][:RECENT_CHANGES]
    dead = [d for d in await store.dead_letters() if d.kind == "user" and d.object_id == p.entra_id]
    return {
        "query": p.query, "entra_id": p.entra_id, "who": p.who, "entra": _entra_facts(p.user),
        "in_scope": p.in_scope, "access": _access(p), "reasons": _reasons(p, settings),
        "groups": _paths(p, settings, group_names),
        "expected": _expected(p, settings, group_names, current), "actual": actual,
        "difference": [engine.readable(op, p.who) for op in p.plan.operations],
        "recent_changes": [{"at": _when(c.at), "what": c.what, "cause": c.why} for c in changes],
        "dead_letters": [
            {"id": d.id, "at": _when(d.created_at), "error": d.error, "cause": d.change.get("cause")} for d in dead
        ],
        "entra_line": _entra_line(p),
    }


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _state_text(state: Mapping[str, Any] | None, *, absent: str) -> str:
    if state is None:
        return absent
    shown = ", ".join(
        f"{k}={state[k]!r}" for k in ("user_name", "external_id", "display_name", "given_name", "family_name",
                                      "email", "cost_center") if k in state
    )
    groups = ", ".join(state["groups"]) or "none"
    return f"{'active' if state['active'] else 'INACTIVE'}; {shown}; groups: {groups}"


def _print_explanation(r: Mapping[str, Any]) -> None:
    _out(f"{r['who']} (Entra id {r['entra_id']})")
    _out(r["entra_line"])
    scope = "in scope" if r["in_scope"] else "OUT OF SCOPE"
    _out(f"AskCody access: {r['access']} ({scope}): {'; '.join(r['reasons'])}")
    for g in r["groups"]:
        depth = f", nested {g['depth']} deep" if g["depth"] else ", direct member"
        _out(f"  {g['askcody_group']} (grants {g['grants']}{depth}): {g['path_text']}")
    _out("Expected in AskCody: " + _state_text(r["expected"], absent="no user"))
    actual = r["actual"]
    held = _state_text(actual, absent="no user")
    _out(f"AskCody holds now: {held}" + (f" (SCIM id {actual['scim_id']})" if actual else ""))
    if r["difference"]:
        _out("Difference (what a sync would do):")
        for line in r["difference"]:
            _out(f"  - {line}")
    else:
        _out("Difference: none, AskCody is in line")
    _out("Recent changes:" if r["recent_changes"] else "Recent changes: none recorded")
    for c in r["recent_changes"]:
        _out(f"  {c['at']}  {c['what']}  (cause: {c['cause']})")
    _out("Dead letters:" if r["dead_letters"] else "Dead letters: none")
    for d in r["dead_letters"]:
        _out(f"  {d['id']}  {d['at']}  {d['error']}  (cause: {d['cause']})")
