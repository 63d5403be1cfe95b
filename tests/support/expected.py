"""The oracle: what AskCody must hold, computed from the simulated tenant and the group mapping.

Written from the contract's table ("What a change in Entra does in AskCody") and its attribute list,
not from the planner, so that it can judge the planner too:

- a user is *in scope* when it is present in Entra (neither soft- nor hard-deleted) and a member
  of at least one configured group that exists: a direct member, or (unless the group is in
  ``direct_only``) a member of a group nested in it at any depth; it must exist in AskCody exactly once, with
  ``externalId`` = its id, ``userName`` = UPN, ``displayName``, ``name.givenName``,
  ``name.familyName``, the work e-mail = mail, the enterprise ``costCenter`` = the configured
  attribute, ``active`` = ``accountEnabled``, and be a member of exactly the AskCody groups of its
  configured Entra groups;
- a user that was provisioned once and is out of scope now (no group left, soft- or hard-deleted,
  its last group deleted) is deprovisioned: inactive and in no configured group (``disable``), or
  gone (``delete``). Its other attributes are not looked at: nothing in the contract updates them;
- a user that was in scope only for a while, between two checks, may never have been seen by the
  reactor (its notifications coalesced or lost): it is either absent or deprovisioned;
- each configured AskCody group holds exactly the users in scope that are members of its Entra
  group (a group AskCody does not hold counts as empty); nothing else exists in AskCody.

Which users were in scope at some moment is history, not state: :class:`Oracle` keeps it, fed by
:meth:`Oracle.observe` after every change made to the tenant.

:func:`read_askcody` reads what scim2-server holds over SCIM, and :func:`diff` lists every way it
differs from the expectation (an empty list: converged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from graphsim import GraphSimulator
from graphsim.tenant import User

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CASE_INSENSITIVE = frozenset({"user_name", "email"})
"""SCIM ``userName`` and e-mail values are ``caseExact: false`` (RFC 7643)."""
ATTRIBUTES = ("user_name", "display_name", "given_name", "family_name", "email", "cost_center")


@dataclass(frozen=True)
class Rules:
    """The part of the configuration the expectation depends on."""

    groups: Mapping[str, str]
    """Entra group id → AskCody group name."""
    deprovision: str = "disable"
    cost_center: str = "employeeOrgData/costCenter"
    direct_only: frozenset[str] = frozenset()
    """Configured groups with ``nested = false``."""



@dataclass(frozen=True)
class UserState:
    """A user as AskCody should hold it (expected) or holds it (actual)."""

    external_id: str
    user_name: str | None
    active: bool
    display_name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    cost_center: str | None
    groups: frozenset[str] = frozenset()
    """AskCody group names."""
    scim_id: str = ""


@dataclass(frozen=True)
class Expected:
    present: dict[str, UserState]
    """In scope now: these, exactly."""
    deprovisioned: frozenset[str]
    """Provisioned earlier (seen so at a passed check), out of scope now."""
    optional: frozenset[str]
    """In scope for a while since the last passed check, out of scope now."""
    groups: dict[str, frozenset[str]]
    """AskCody group name → externalIds of its members."""
    group_ids: dict[str, str]
    """AskCody group name → Entra group id (its expected externalId)."""
    deprovision: str = "disable"


@dataclass(frozen=True)
class GroupState:
    scim_id: str
    display_name: str
    external_id: str | None
    members: frozenset[str]
    """SCIM ids of the members."""


@dataclass
class AskCodyState:
    """What scim2-server holds."""

    users: list[UserState] = field(default_factory=list)
    groups: list[GroupState] = field(default_factory=list)

    def by_external_id(self) -> dict[str, list[UserState]]:
        out: dict[str, list[UserState]] = {}
        for u in self.users:
            out.setdefault(u.external_id, []).append(u)
        return out

    def fingerprint(self) -> Any:
        """A comparable, order-free summary (for "nothing changed" checks)."""
        return (
            sorted(repr(u) for u in self.users),
            sorted((g.scim_id, g.display_name, g.external_id or "", tuple(sorted(g.members))) for g in self.groups),
        )


def clean(value: Any) -> str | None:
    """An attribute value as SCIM carries it: text without surrounding blanks; nothing for empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def cost_center_of(user: User, source: str) -> str | None:
    """The configured cost-center attribute of a tenant user."""
    if not source:
        return None
    if source == "employeeOrgData/costCenter":
        return clean((user.employee_org_data or {}).get("costCenter"))
    prefix = "onPremisesExtensionAttributes/extensionAttribute"
    if source.startswith(prefix):
        return clean(user.extension_attributes.get(int(source[len(prefix):])))
    for name, value in user.extensions.items():
        if name.lower() == source.lower():
            return clean(value)
    return None


def scope_of(sim: GraphSimulator, mapping: Rules) -> dict[str, frozenset[str]]:
    """Users in scope now → the configured Entra groups they are members of (directly, or through
    nested groups unless the group is ``direct_only``)."""
    out: dict[str, set[str]] = {}
    for gid in mapping.groups:
        for uid in _members(sim, gid, nested=gid not in mapping.direct_only):
            user = sim.tenant.users.get(uid)
            if user is not None and not user.soft_deleted:
                out.setdefault(uid, set()).add(gid)
    return {uid: frozenset(gids) for uid, gids in out.items()}


def _members(sim: GraphSimulator, gid: str, *, nested: bool) -> set[str]:
    """The user members of a group, with those of every group nested in it when ``nested``."""
    seen: set[str] = set()
    users: set[str] = set()
    todo = [gid]
    while todo:
        group = sim.tenant.groups.get(todo.pop())
        if group is None or group.id in seen:
            continue
        seen.add(group.id)
        users |= set(group.members)
        if nested:
            todo.extend(group.member_groups)
    return users


class Oracle:
    """Expected AskCody state for one tenant and mapping, with the scope history it needs."""

    def __init__(self, mapping: Rules) -> None:
        self.mapping = mapping
        self.provisioned: set[str] = set()
        """Users a passed check saw in scope (so AskCody holds them, or held them)."""
        self.transient: set[str] = set()
        """Users in scope at some moment since the last passed check."""

    def observe(self, sim: GraphSimulator) -> None:
        """Note who is in scope now; call after every change to the tenant."""
        self.transient |= set(scope_of(sim, self.mapping))

    def expected(self, sim: GraphSimulator) -> Expected:
        scope = scope_of(sim, self.mapping)
        present: dict[str, UserState] = {}
        for uid, gids in scope.items():
            u = sim.tenant.users[uid]
            present[uid] = UserState(
                external_id=uid,
                user_name=clean(u.user_principal_name),
                active=bool(u.account_enabled),
                display_name=clean(u.display_name),
                given_name=clean(u.given_name),
                family_name=clean(u.surname),
                email=clean(u.mail),
                cost_center=cost_center_of(u, self.mapping.cost_center),
                groups=frozenset(self.mapping.groups[g] for g in gids),
            )
        groups = {
            name: frozenset(uid for uid, gids in scope.items() if gid in gids) for gid, name in self.mapping.groups.items()
        }
        gone = self.provisioned - set(present)
        return Expected(
            present=present,
            deprovisioned=frozenset(gone),
            optional=frozenset(self.transient - set(present) - gone),
            groups=groups,
            group_ids={name: gid for gid, name in self.mapping.groups.items()},
            deprovision=self.mapping.deprovision,
        )

    def passed(self, expected: Expected) -> None:
        """A check against ``expected`` passed: its users in scope are provisioned from now on."""
        self.provisioned |= set(expected.present)
        self.transient = set(expected.present)


def _same(name: str, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.casefold() == b.casefold() if name in CASE_INSENSITIVE else a == b


def diff(expected: Expected, actual: AskCodyState) -> list[str]:
    """Every difference between what AskCody holds and what it should hold (empty: converged)."""
    problems: list[str] = []
    by_ext = actual.by_external_id()
    by_scim = {u.scim_id: u for u in actual.users}
    for ext, users in sorted(by_ext.items()):
        if len(users) > 1:
            problems.append(f"user {ext}: {len(users)} AskCody users carry this externalId")
    if "" in by_ext:
        problems.append(f"{len(by_ext[''])} AskCody user(s) without externalId")

    memberships: dict[str, set[str]] = {}
    groups_by_name: dict[str, list[GroupState]] = {}
    for g in actual.groups:
        groups_by_name.setdefault(g.display_name, []).append(g)
        for member in g.members:
            memberships.setdefault(member, set()).add(g.display_name)
            if member not in by_scim:
                problems.append(f"group {g.display_name!r}: member {member} is no AskCody user")

    def groups_of(u: UserState) -> frozenset[str]:
        return frozenset(memberships.get(u.scim_id, ()))

    for uid, want in sorted(expected.present.items()):
        found = by_ext.get(uid)
        if not found:
            problems.append(f"user {uid} ({want.user_name}): missing in AskCody")
            continue
        have = found[0]
        for name in ATTRIBUTES:
            a, b = getattr(want, name), getattr(have, name)
            if not _same(name, a, b):
                problems.append(f"user {uid}: {name} is {b!r}, expected {a!r}")
        if have.active != want.active:
            problems.append(f"user {uid}: active is {have.active}, expected {want.active}")
        if groups_of(have) != want.groups:
            problems.append(f"user {uid}: in groups {sorted(groups_of(have))}, expected {sorted(want.groups)}")

    for uid in sorted(expected.deprovisioned | expected.optional):
        found = by_ext.get(uid)
        if expected.deprovision == "delete":
            if found:
                problems.append(f"user {uid}: out of scope and deprovision=delete, but still in AskCody")
            continue
        if not found:
            if uid in expected.deprovisioned:
                problems.append(f"user {uid}: was provisioned and must stay (inactive), but is gone")
            continue
        have = found[0]
        if have.active:
            problems.append(f"user {uid}: out of scope but still active")
        if groups_of(have):
            problems.append(f"user {uid}: out of scope but still in groups {sorted(groups_of(have))}")

    known = set(expected.present) | expected.deprovisioned | expected.optional
    for ext in sorted(set(by_ext) - known - {""}):
        problems.append(f"user {ext}: in AskCody but never in scope")

    for name, members in sorted(expected.groups.items()):
        found_groups = groups_by_name.get(name, [])
        if len(found_groups) > 1:
            problems.append(f"group {name!r}: {len(found_groups)} AskCody groups of this name")
        have_members: set[str] = set()
        for g in found_groups:
            if g.external_id != expected.group_ids[name]:
                problems.append(f"group {name!r}: externalId {g.external_id}, expected {expected.group_ids[name]}")
            have_members |= {by_scim[m].external_id if m in by_scim else m for m in g.members}
        if have_members != set(members):
            missing, extra = sorted(set(members) - have_members), sorted(have_members - set(members))
            problems.append(f"group {name!r}: missing members {missing}, unexpected members {extra}")
    for name in sorted(set(groups_by_name) - set(expected.groups)):
        problems.append(f"group {name!r}: in AskCody but not configured")
    return problems


def _email(resource: Mapping[str, Any]) -> str | None:
    emails = [e for e in resource.get("emails") or [] if isinstance(e, Mapping)]
    chosen = next((e for e in emails if e.get("type") == "work"), None) or next(
        (e for e in emails if e.get("primary")), None
    ) or (emails[0] if emails else None)
    return clean(chosen.get("value")) if chosen else None


def parse_user(resource: Mapping[str, Any]) -> UserState:
    name = resource.get("name") or {}
    enterprise = resource.get(ENTERPRISE) or {}
    active = resource.get("active")
    return UserState(
        external_id=str(resource.get("externalId") or ""),
        user_name=clean(resource.get("userName")),
        active=active is True or (isinstance(active, str) and active.lower() == "true"),
        display_name=clean(resource.get("displayName")),
        given_name=clean(name.get("givenName")),
        family_name=clean(name.get("familyName")),
        email=_email(resource),
        cost_center=clean(enterprise.get("costCenter")),
        scim_id=str(resource["id"]),
    )


async def _all(client: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = 1
    while True:
        r = await client.get(endpoint, params={"startIndex": str(start), "count": "200"})
        r.raise_for_status()
        data = r.json()
        page = data.get("Resources") or []
        out.extend(page)
        start += len(page)
        if not page or start > int(data.get("totalResults", 0)):
            return out


async def read_askcody(scim_url: str, token: str) -> AskCodyState:
    """Everything scim2-server holds (users and groups, all pages), read over SCIM."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=scim_url.rstrip("/"), headers=headers, timeout=10) as client:
        users = await _all(client, "/Users")
        groups = await _all(client, "/Groups")
    return AskCodyState(
        users=[parse_user(u) for u in users],
        groups=[
            GroupState(
                scim_id=str(g["id"]),
                display_name=str(g.get("displayName") or ""),
                external_id=g.get("externalId"),
                members=frozenset(str(m["value"]) for m in g.get("members") or [] if isinstance(m, Mapping)),
            )
            for g in groups
        ],
    )


def rules_from(groups: Mapping[str, tuple[str, str]] | Mapping[str, str], **kw: Any) -> Rules:
    """A :class:`Rules` from ``{entra id: askcody name}`` or ``local_stack``'s ``{id: (name, grants)}``."""
    names = {gid: (v[0] if isinstance(v, tuple) else v) for gid, v in groups.items()}
    return Rules(groups=names, **kw)


def describe(problems: Iterable[str], limit: int = 20) -> str:
    items = list(problems)
    head = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{len(items)} difference(s):\n  {head}{more}"
