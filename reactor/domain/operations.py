"""The SCIM operations the planner emits, one frozen value per write to AskCody.

Users and groups are named by their Entra ids (what the reactor knows for sure); the SCIM ids are
carried along when AskCody already holds the object, and are ``None`` when the object is created
earlier in the same plan (the applier fills them in). :func:`describe` gives the one-line form used
by ``reactor sync --dry-run`` and the logs, :func:`as_json` the form of ``--dry-run --json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from reactor.domain.model import UserAttributes


@dataclass(frozen=True)
class CreateUser:
    """Create the user (or adopt the one AskCody already holds) with these attributes."""

    entra_id: str
    attrs: UserAttributes
    active: bool = True


@dataclass(frozen=True)
class UpdateUser:
    """Replace the attributes that differ. ``changes`` maps :class:`UserAttributes` field names
    (``user_name``, ``external_id``, ``display_name``, ``given_name``, ``family_name``, ``email``,
    ``cost_center``) to the new value, ``None`` meaning "remove it"."""

    entra_id: str
    scim_id: str
    changes: Mapping[str, str | None] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SetActive:
    """Set ``active`` (disable on deprovision or ``accountEnabled`` false; enable when back)."""

    entra_id: str
    scim_id: str
    active: bool


@dataclass(frozen=True)
class DeleteUser:
    """Delete the user (deprovision when ``askcody.deprovision = "delete"``)."""

    entra_id: str
    scim_id: str


@dataclass(frozen=True)
class EnsureGroup:
    """Find the AskCody group by ``externalId`` = Entra group id, then by name, or create it."""

    entra_group_id: str
    display_name: str


@dataclass(frozen=True)
class AddMember:
    """Add the user to the group. A ``None`` SCIM id names an object created earlier in the plan."""

    entra_group_id: str
    entra_user_id: str
    scim_group_id: str | None = None
    scim_user_id: str | None = None


@dataclass(frozen=True)
class RemoveMember:
    """Remove the user from the group (both exist in AskCody, so both SCIM ids are known)."""

    entra_group_id: str
    entra_user_id: str
    scim_group_id: str
    scim_user_id: str


Operation: TypeAlias = CreateUser | UpdateUser | SetActive | DeleteUser | EnsureGroup | AddMember | RemoveMember

KINDS: Mapping[type[Any], str] = {
    CreateUser: "create_user",
    UpdateUser: "update_user",
    SetActive: "set_active",
    DeleteUser: "delete_user",
    EnsureGroup: "ensure_group",
    AddMember: "add_member",
    RemoveMember: "remove_member",
}


def kind(op: Operation) -> str:
    """The operation's kind in snake case (``create_user``, ``add_member``…), for metrics and JSON."""
    return KINDS[type(op)]


def entra_user_of(op: Operation) -> str | None:
    """The Entra id of the user an operation is about; ``None`` for :class:`EnsureGroup`."""
    if isinstance(op, EnsureGroup):
        return None
    if isinstance(op, AddMember | RemoveMember):
        return op.entra_user_id
    return op.entra_id


def _value(value: str | None) -> str:
    return "(none)" if value is None else repr(value)


def describe(op: Operation) -> str:
    """One readable line, e.g. ``create user alice@contoso.com (externalId …, active)``."""
    match op:
        case CreateUser(entra_id=entra_id, attrs=attrs, active=active):
            state = "active" if active else "inactive"
            return f"create user {attrs.user_name} (externalId {entra_id}, {state})"
        case UpdateUser(entra_id=entra_id, scim_id=scim_id, changes=changes):
            parts = ", ".join(f"{name}={_value(value)}" for name, value in sorted(changes.items()))
            return f"update user {entra_id} (SCIM {scim_id}): {parts}"
        case SetActive(entra_id=entra_id, scim_id=scim_id, active=active):
            verb = "enable" if active else "disable"
            return f"{verb} user {entra_id} (SCIM {scim_id})"
        case DeleteUser(entra_id=entra_id, scim_id=scim_id):
            return f"delete user {entra_id} (SCIM {scim_id})"
        case EnsureGroup(entra_group_id=group_id, display_name=name):
            return f"ensure group {name!r} (externalId {group_id})"
        case AddMember(entra_group_id=group_id, entra_user_id=user_id):
            return f"add user {user_id} to group {group_id}"
        case RemoveMember(entra_group_id=group_id, entra_user_id=user_id):
            return f"remove user {user_id} from group {group_id}"
    raise TypeError(f"not an operation: {op!r}")


def as_json(op: Operation) -> dict[str, Any]:
    """A JSON-ready object: ``{"op": kind, ...fields}`` (attributes flattened into ``attrs``)."""
    out: dict[str, Any] = {"op": kind(op)}
    for name in op.__dataclass_fields__:
        value = getattr(op, name)
        if isinstance(value, UserAttributes):
            value = value.as_dict()
        elif isinstance(value, Mapping):
            value = dict(value)
        out[name] = value
    out["description"] = describe(op)
    return out
