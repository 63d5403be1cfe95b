"""The planner: Entra facts + the group mapping + what AskCody holds → the SCIM operations to apply.

Pure: no I/O, no clock. Given the same inputs it returns the same list, and planning again on the
state that results from applying a plan returns ``[]``.

A user is *in scope* when Entra knows it (present, neither soft- nor hard-deleted) and it is a
direct member of at least one configured group (``settings.groups``). Groups that are not configured
are never touched. The rules follow the contract's table:

* not provisioned, in scope → ``EnsureGroup`` (for groups AskCody lacks), ``CreateUser`` (active =
  ``accountEnabled``), then ``AddMember`` for each group in scope;
* provisioned, in scope → ``UpdateUser`` with the attributes that differ, ``SetActive`` when
  ``active`` differs from ``accountEnabled`` (memberships kept), ``AddMember``/``RemoveMember`` so the
  configured groups match Entra. A deprovisioned user coming back is enabled and re-added;
* provisioned, out of scope (no group left, soft- or hard-deleted, unknown to Graph) →
  ``RemoveMember`` for the configured groups it is still in, then deprovision per
  ``askcody.deprovision``: ``SetActive(False)`` or ``DeleteUser``. Only a user the reactor owns
  (``externalId`` = its Entra id) is deprovisioned: one created by hand that was never in scope is
  left alone, apart from configured group memberships.

Ordering within a plan: groups ensured, then user created/updated/enabled, member adds, member
removes, and last the deprovisioning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reactor.config import Settings
from reactor.domain.model import EntraUser, ScimUser, UserAttributes, UserFacts
from reactor.domain.operations import (
    AddMember,
    CreateUser,
    DeleteUser,
    EnsureGroup,
    Operation,
    RemoveMember,
    SetActive,
    UpdateUser,
)
from reactor.sync.nesting import Path

CASE_INSENSITIVE = frozenset({"user_name", "email"})
"""Attributes compared without regard to case (SCIM ``userName`` and e-mail values are caseExact=false)."""


def user_attributes(user: EntraUser) -> UserAttributes:
    """The SCIM attributes of an Entra user: userName ← UPN, externalId ← id, name, mail, cost center."""
    return UserAttributes(
        user_name=user.user_principal_name,
        external_id=user.id,
        display_name=_clean(user.display_name),
        given_name=_clean(user.given_name),
        family_name=_clean(user.surname),
        email=_clean(user.mail),
        cost_center=_clean(user.cost_center),
    )


def current_attributes(current: ScimUser) -> dict[str, str | None]:
    """What AskCody holds, under the :class:`UserAttributes` field names."""
    return {
        "user_name": _clean(current.user_name),
        "external_id": _clean(current.external_id),
        "display_name": _clean(current.display_name),
        "given_name": _clean(current.given_name),
        "family_name": _clean(current.family_name),
        "email": _clean(current.email),
        "cost_center": _clean(current.cost_center),
    }


def attribute_changes(wanted: UserAttributes, current: ScimUser) -> dict[str, str | None]:
    """The attributes whose value in AskCody differs from ``wanted`` (name → wanted value)."""
    have = current_attributes(current)
    changes: dict[str, str | None] = {}
    for name, value in wanted.as_dict().items():
        value = _clean(value)
        if not _same(name, value, have[name]):
            changes[name] = value
    return changes


def in_scope_groups(facts: UserFacts, settings: Settings) -> frozenset[str]:
    """The configured groups the user is in, or none when Entra no longer holds the user."""
    user = facts.user
    if user is None or user.state != "present":
        return frozenset()
    return facts.groups & settings.group_ids


def owned(facts: UserFacts, current: ScimUser) -> bool:
    """True when the AskCody user carries this Entra user's id as ``externalId``."""
    return (current.external_id or "").lower() == facts.entra_id.lower()


def current_memberships(
    current: ScimUser,
    settings: Settings,
    group_ids: Mapping[str, str],
    group_members: Mapping[str, frozenset[str]] | None = None,
) -> frozenset[str]:
    """The configured groups (Entra ids) the AskCody user is a member of.

    ``current.groups`` holds SCIM group ids; when ``group_members`` (SCIM group id → SCIM user ids)
    holds a group, it is the authority for that group instead.
    """
    out: set[str] = set()
    for mapping in settings.groups:
        scim_group = group_ids.get(mapping.id)
        if scim_group is None:
            continue
        if group_members is not None and scim_group in group_members:
            member = current.id in group_members[scim_group]
        else:
            member = scim_group in current.groups
        if member:
            out.add(mapping.id)
    return frozenset(out)


def group_display_name(group_id: str, settings: Settings, group_names: Mapping[str, str] | None = None) -> str:
    """The AskCody name of a configured group: ``askcody_group``, else the Entra displayName, else its id."""
    mapping = settings.group(group_id)
    if mapping is not None and mapping.askcody_group:
        return mapping.askcody_group
    if group_names and group_names.get(group_id):
        return group_names[group_id]
    return group_id


def plan_user(
    facts: UserFacts,
    current: ScimUser | None,
    settings: Settings,
    group_members: Mapping[str, frozenset[str]] | None = None,
    *,
    group_ids: Mapping[str, str] | None = None,
    group_names: Mapping[str, str] | None = None,
) -> list[Operation]:
    """The operations that bring AskCody in line with Entra for one user.

    :param facts: what Entra says about the user (``user`` None when Graph no longer knows it).
    :param current: the AskCody user matched by externalId, userName or e-mail; None when there is none.
    :param settings: the configured groups and ``askcody.deprovision``.
    :param group_members: optional SCIM group id → SCIM user ids, the authority for those groups'
        memberships (e.g. listed once per group during a full reconcile) over ``current.groups``.
    :param group_ids: Entra group id → SCIM group id of the configured groups AskCody already holds;
        a group missing here gets an ``EnsureGroup`` before it is needed.
    :param group_names: Entra group id → Entra displayName, the name of a group created without an
        ``askcody_group`` in the mapping.
    """
    ids: Mapping[str, str] = group_ids or {}
    wanted = in_scope_groups(facts, settings)
    user = facts.user

    if current is None:
        if not wanted or user is None:
            return []
        ops: list[Operation] = [*_ensure_groups(wanted, settings, ids, group_names)]
        ops.append(CreateUser(facts.entra_id, user_attributes(user), active=user.account_enabled))
        ops.extend(AddMember(g, facts.entra_id, ids.get(g), None) for g in sorted(wanted))
        return ops

    have = current_memberships(current, settings, ids, group_members)
    removes = [RemoveMember(g, facts.entra_id, ids[g], current.id) for g in sorted(have - wanted)]

    if not wanted or user is None:
        if not owned(facts, current):
            return list(removes)
        ops = list(removes)
        if settings.askcody.deprovision == "delete":
            ops.append(DeleteUser(facts.entra_id, current.id))
        elif current.active:
            ops.append(SetActive(facts.entra_id, current.id, False))
        return ops

    ops = [*_ensure_groups(wanted - have, settings, ids, group_names)]
    changes = attribute_changes(user_attributes(user), current)
    if changes:
        ops.append(UpdateUser(facts.entra_id, current.id, changes))
    if current.active != user.account_enabled:
        ops.append(SetActive(facts.entra_id, current.id, user.account_enabled))
    ops.extend(AddMember(g, facts.entra_id, ids.get(g), current.id) for g in sorted(wanted - have))
    ops.extend(removes)
    return ops


def _ensure_groups(
    groups: Iterable[str], settings: Settings, group_ids: Mapping[str, str], group_names: Mapping[str, str] | None
) -> list[EnsureGroup]:
    return [EnsureGroup(g, group_display_name(g, settings, group_names)) for g in sorted(groups) if g not in group_ids]


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _same(name: str, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    if name in CASE_INSENSITIVE:
        return a.casefold() == b.casefold()
    return a == b


@dataclass
class UserPlan:
    """The plan for one user, with what it was made from."""

    entra_id: str
    facts: UserFacts
    current: ScimUser | None
    operations: list[Operation] = field(default_factory=list)
    known_as: str = ""
    """The userName last applied to AskCody (from the mapping's state): names a user Graph no longer knows."""
    paths: dict[str, Path] = field(default_factory=dict)
    """Configured group in scope → the groups from it down to the one the user is a direct member of."""
    from_state: bool = False
    """``current`` is the state last applied (from the store), not read from AskCody."""
    state_kept: bool = False
    """The store keeps a state last applied for this user (set aside before the next writes)."""
    group_ids: dict[str, str] | None = None
    """The AskCody groups known when the plan was made (Entra id → SCIM id), which its operations
    name: applying a plan that creates no group uses them instead of reading them again."""

    @property
    def who(self) -> str:
        """The user's name for people: the UPN Entra holds, else the one applied last, else AskCody's
        userName; the Entra id only when none is known."""
        upn = self.facts.user.user_principal_name if self.facts.user else ""
        return upn or self.known_as or (self.current.user_name if self.current else "") or self.entra_id
