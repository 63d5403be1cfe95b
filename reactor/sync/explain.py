"""What AskCody should hold for one person, and why: the report behind ``reactor explain USER`` and the
status page's explain view (the same document, built here on the engine floor so that both reach it).

It finds the person in Entra (object id, userPrincipalName or mail), reads the configured groups and
the groups nested in them fresh from Graph, and plans that one user as the engine does, writing
nothing: the Entra facts, the groups and nesting paths that put them in scope (or why they are out),
what AskCody should hold, what it holds now and the difference, the recent changes applied for them
and their dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reactor.config import Settings
from reactor.domain.model import EntraUser, ScimUser
from reactor.errors import NotFoundError
from reactor.graph.reader import GUID
from reactor.store import Store
from reactor.sync.engine import SyncEngine
from reactor.sync.planner import UserPlan, group_display_name, user_attributes

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


async def find_person(engine: SyncEngine, store: Store, query: str) -> Person | None:
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


def entra_facts(user: EntraUser | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "state": user.state, "enabled": user.account_enabled, "user_principal_name": user.user_principal_name,
        "mail": user.mail, "display_name": user.display_name, "given_name": user.given_name,
        "surname": user.surname, "cost_center": user.cost_center,
    }


def entra_line(p: Person) -> str:
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


def scope_paths(p: Person, settings: Settings, group_names: Mapping[str, str]) -> list[dict[str, Any]]:
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


def reasons(p: Person, settings: Settings) -> list[str]:
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


async def explanation(engine: SyncEngine, store: Store, p: Person) -> dict[str, Any]:
    settings = engine.settings
    group_names = await engine.group_names(p.plan.facts.groups)
    current, actual = await _actual(engine, store, p)
    changes = [c for c in await store.recent_changes(CHANGES_LOOKED_AT) if c.entra_id == p.entra_id][:RECENT_CHANGES]
    dead = [d for d in await store.dead_letters() if d.kind == "user" and d.object_id == p.entra_id]
    return {
        "query": p.query, "entra_id": p.entra_id, "who": p.who, "entra": entra_facts(p.user),
        "in_scope": p.in_scope, "access": _access(p), "reasons": reasons(p, settings),
        "groups": scope_paths(p, settings, group_names),
        "expected": _expected(p, settings, group_names, current), "actual": actual,
        "difference": [engine.readable(op, p.who) for op in p.plan.operations],
        "recent_changes": [{"at": _when(c.at), "what": c.what, "cause": c.why} for c in changes],
        "dead_letters": [
            {"id": d.id, "at": _when(d.created_at), "error": d.error, "cause": d.change.get("cause")} for d in dead
        ],
        "entra_line": entra_line(p),
    }


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))




async def explain(engine: SyncEngine, store: Store, query: str) -> dict[str, Any] | None:
    """The report on the person named by ``query``; None when nobody is found."""
    p = await find_person(engine, store, query)
    return None if p is None else await explanation(engine, store, p)
