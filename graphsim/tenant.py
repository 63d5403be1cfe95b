"""The simulated directory: users, groups, direct memberships, and the change log delta reads.

A group's members are users and groups (nested groups, as Entra has them): a group can be a member
of several groups, cycles included (a group is never its own member). Transitive reads walk the
nesting once per group, so cycles and diamonds end.

Every mutation appends :class:`Change` records to :attr:`Tenant.log` (sequence number = position + 1)
and hands each to the listeners (the simulator turns them into change notifications).

Deletion, as Entra does it for security groups and users:

- a soft-deleted user keeps its memberships hidden: group reads and group delta show it removed,
  and a restore brings the memberships back (both recorded as membership changes);
- a hard delete removes the user and its memberships for good;
- a deleted group is gone for good (security groups have no recycle bin).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal["user", "group", "member"]
MemberKind = Literal["user", "group"]
ORG_DATA_KEYS = frozenset({"costCenter", "division"})
DIRECTORY_EXTENSION = re.compile(r"^extension_[0-9a-fA-F]{32}_[A-Za-z0-9_]+$")
USER_FIELDS = frozenset(
    {
        "user_principal_name",
        "display_name",
        "given_name",
        "surname",
        "mail",
        "account_enabled",
        "employee_org_data",
        "extension_attributes",
        "extensions",
        "user_type",
        "on_premises_sync_enabled",
    }
)
USER_TYPES = frozenset({"Member", "Guest"})
GROUP_FIELDS = frozenset({"display_name", "security_enabled", "description"})


@dataclass(frozen=True)
class Change:
    """One recorded change. ``member`` changes name the group in ``object_id`` and the member (a user,
    or a group when ``member_kind`` says so) in ``member_id``."""

    seq: int
    kind: ChangeKind
    object_id: str
    member_id: str = ""
    added: bool = False
    member_kind: MemberKind = "user"
    deleted: bool = False
    """For ``user`` and ``group``: the object is gone for good."""


@dataclass
class User:
    """A user as the directory holds it."""

    id: str
    user_principal_name: str
    display_name: str | None = None
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    account_enabled: bool = True
    employee_org_data: dict[str, str | None] | None = None
    extension_attributes: dict[int, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    user_type: str = "Member"
    """``Member``, or ``Guest`` for an invited external user (UPN ``…#EXT#@<tenant>``)."""
    on_premises_sync_enabled: bool | None = None
    """True for a hybrid user synced from on-premises AD; None for a cloud-only one (as Graph says)."""
    created_at: float = 0.0
    deleted_at: float | None = None

    @property
    def soft_deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass
class Group:
    """A group; ``members`` holds user ids in the order they were added (hidden ones included),
    ``member_groups`` the ids of its nested groups."""

    id: str
    display_name: str
    security_enabled: bool = True
    description: str | None = None
    created_at: float = 0.0
    members: dict[str, None] = field(default_factory=dict)
    member_groups: dict[str, None] = field(default_factory=dict)


def _guid(value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    if not isinstance(value, str) or not value.strip():
        raise ValueError("id must be a non-empty string")
    return value.strip().lower()


def _org_data(value: Mapping[str, Any] | None) -> dict[str, str | None] | None:
    if value is None:
        return None
    unknown = set(value) - ORG_DATA_KEYS
    if unknown:
        raise ValueError(f"employee_org_data knows only costCenter and division, not {sorted(unknown)}")
    return {key: value.get(key) for key in ("costCenter", "division")}


def _user_type(value: Any) -> str:
    if value not in USER_TYPES:
        raise ValueError(f"user_type must be one of {sorted(USER_TYPES)}, not {value!r}")
    return str(value)


def _merge_extension_attributes(current: dict[int, str], value: Mapping[Any, Any] | None) -> dict[int, str]:
    merged = dict(current)
    for raw_key, item in (value or {}).items():
        key = int(str(raw_key).removeprefix("extensionAttribute"))
        if not 1 <= key <= 15:
            raise ValueError(f"extension attribute {raw_key!r} is not one of 1..15")
        if item is None:
            merged.pop(key, None)
        else:
            merged[key] = str(item)
    return merged


def _merge_extensions(current: dict[str, Any], value: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(current)
    for name, item in (value or {}).items():
        if not DIRECTORY_EXTENSION.match(name):
            raise ValueError(f"{name!r} is not a directory extension name (extension_<32 hex>_<name>)")
        existing = next((key for key in merged if key.lower() == name.lower()), name)
        merged.pop(existing, None)
        if item is not None:
            merged[name] = item
    return merged


class Tenant:
    """Users, groups and memberships in memory, with an append-only change log."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.log: list[Change] = []
        self.listeners: list[Callable[[Change], None]] = []
        self._member_of: dict[str, dict[str, None]] = {}
        self._parents: dict[str, dict[str, None]] = {}
        self._by_upn: dict[str, str] = {}

    @property
    def seq(self) -> int:
        """The sequence number of the latest change (0 before any)."""
        return len(self.log)

    def _record(self, kind: ChangeKind, object_id: str, **details: Any) -> None:
        change = Change(seq=len(self.log) + 1, kind=kind, object_id=object_id, **details)
        self.log.append(change)
        for listener in self.listeners:
            listener(change)

    def present_user(self, user_id: str) -> User:
        """The user, unless unknown (``KeyError``) or soft-deleted (``ValueError``)."""
        user = self.users.get(user_id.lower())
        if user is None:
            raise KeyError(f"no user {user_id}")
        if user.soft_deleted:
            raise ValueError(f"user {user_id} is soft-deleted")
        return user

    def group(self, group_id: str) -> Group:
        group = self.groups.get(group_id.lower())
        if group is None:
            raise KeyError(f"no group {group_id}")
        return group

    def find_user(self, key: str) -> User | None:
        """A present (not soft-deleted) user by id or userPrincipalName."""
        user = self.users.get(key.lower())
        if user is None and key.lower() in self._by_upn:
            user = self.users[self._by_upn[key.lower()]]
        return None if user is None or user.soft_deleted else user

    def visible_members(self, group_id: str) -> list[str]:
        """Ids of the group's members that are not soft-deleted."""
        group = self.group(group_id)
        return [uid for uid in group.members if not self.users[uid].soft_deleted]

    def member_groups(self, group_id: str) -> list[str]:
        """Ids of the groups that are direct members of the group."""
        return list(self.group(group_id).member_groups)

    def transitive_members(self, group_id: str) -> tuple[list[str], list[str]]:
        """The visible users and the groups that are members of the group at any depth, each once,
        breadth first (the group itself is not its own member, even in a cycle)."""
        root = self.group(group_id)
        users: dict[str, None] = {}
        groups: dict[str, None] = {}
        queue = [root.id]
        while queue:
            group = self.groups[queue.pop(0)]
            users.update((uid, None) for uid in group.members if not self.users[uid].soft_deleted)
            for child in group.member_groups:
                if child != root.id and child not in groups:
                    groups[child] = None
                    queue.append(child)
        return list(users), list(groups)

    def groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a direct member of (empty for a soft-deleted user)."""
        user = self.users.get(user_id.lower())
        if user is None or user.soft_deleted:
            return []
        return list(self._member_of.get(user.id, {}))

    def add_user(
        self,
        *,
        user_principal_name: str,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        mail: str | None = None,
        account_enabled: bool = True,
        employee_org_data: Mapping[str, Any] | None = None,
        extension_attributes: Mapping[Any, Any] | None = None,
        extensions: Mapping[str, Any] | None = None,
        user_type: str = "Member",
        on_premises_sync_enabled: bool | None = None,
        id: str | None = None,
    ) -> str:
        user_id = _guid(id)
        if user_id in self.users:
            raise ValueError(f"user {user_id} exists already")
        if not user_principal_name:
            raise ValueError("user_principal_name is required")
        self._check_upn_free(user_principal_name, user_id)
        self.users[user_id] = User(
            id=user_id,
            user_principal_name=user_principal_name,
            display_name=display_name,
            given_name=given_name,
            surname=surname,
            mail=mail,
            account_enabled=bool(account_enabled),
            employee_org_data=_org_data(employee_org_data),
            extension_attributes=_merge_extension_attributes({}, extension_attributes),
            extensions=_merge_extensions({}, extensions),
            user_type=_user_type(user_type),
            on_premises_sync_enabled=on_premises_sync_enabled,
            created_at=self.clock(),
        )
        self._by_upn[user_principal_name.lower()] = user_id
        self._record("user", user_id)
        return user_id

    def _check_upn_free(self, upn: str, user_id: str) -> None:
        holder = self._by_upn.get(upn.lower())
        if holder is not None and holder != user_id:
            raise ValueError(f"userPrincipalName {upn} is taken by user {holder}")

    def update_user(self, user_id: str, **changes: Any) -> None:
        user = self.present_user(user_id)
        unknown = set(changes) - USER_FIELDS
        if unknown:
            raise TypeError(f"update_user() got unknown fields {sorted(unknown)}")
        if "user_principal_name" in changes:
            if not changes["user_principal_name"]:
                raise ValueError("user_principal_name cannot be empty")
            self._check_upn_free(changes["user_principal_name"], user.id)
            self._by_upn.pop(user.user_principal_name.lower(), None)
            self._by_upn[changes["user_principal_name"].lower()] = user.id
        for name, value in changes.items():
            if name == "employee_org_data":
                user.employee_org_data = _org_data(value)
            elif name == "extension_attributes":
                user.extension_attributes = _merge_extension_attributes(user.extension_attributes, value)
            elif name == "extensions":
                user.extensions = _merge_extensions(user.extensions, value)
            elif name == "account_enabled":
                user.account_enabled = bool(value)
            elif name == "user_type":
                user.user_type = _user_type(value)
            else:
                setattr(user, name, value)
        self._record("user", user.id)

    def soft_delete_user(self, user_id: str) -> None:
        user = self.present_user(user_id)
        user.deleted_at = self.clock()
        self._by_upn.pop(user.user_principal_name.lower(), None)
        self._record("user", user.id)
        self._record_memberships(user.id, added=False)

    def restore_user(self, user_id: str) -> None:
        user = self.users.get(user_id.lower())
        if user is None:
            raise KeyError(f"no user {user_id}")
        if not user.soft_deleted:
            raise ValueError(f"user {user_id} is not soft-deleted")
        self._check_upn_free(user.user_principal_name, user.id)
        user.deleted_at = None
        self._by_upn[user.user_principal_name.lower()] = user.id
        self._record("user", user.id)
        self._record_memberships(user.id, added=True)

    def hard_delete_user(self, user_id: str) -> None:
        user = self.users.pop(user_id.lower(), None)
        if user is None:
            raise KeyError(f"no user {user_id}")
        if not user.soft_deleted:
            self._by_upn.pop(user.user_principal_name.lower(), None)
        self._record("user", user.id, deleted=True)
        for group_id in self._member_of.pop(user.id, {}):
            self.groups[group_id].members.pop(user.id, None)
            if not user.soft_deleted:
                self._record("member", group_id, member_id=user.id, added=False)

    def _record_memberships(self, user_id: str, *, added: bool) -> None:
        for group_id in self._member_of.get(user_id, {}):
            self._record("member", group_id, member_id=user_id, added=added)

    def add_group(
        self, *, display_name: str, security_enabled: bool = True, description: str | None = None, id: str | None = None
    ) -> str:
        group_id = _guid(id)
        if group_id in self.groups:
            raise ValueError(f"group {group_id} exists already")
        self.groups[group_id] = Group(
            id=group_id,
            display_name=display_name,
            security_enabled=bool(security_enabled),
            description=description,
            created_at=self.clock(),
        )
        self._record("group", group_id)
        return group_id

    def update_group(self, group_id: str, **changes: Any) -> None:
        group = self.group(group_id)
        unknown = set(changes) - GROUP_FIELDS
        if unknown:
            raise TypeError(f"update_group() got unknown fields {sorted(unknown)}")
        for name, value in changes.items():
            setattr(group, name, value)
        self._record("group", group.id)

    def delete_group(self, group_id: str) -> None:
        """Delete a group; it leaves the groups it was a member of (recorded as their membership changes)."""
        group = self.group(group_id)
        for parent_id in self._parents.pop(group.id, {}):
            self.groups[parent_id].member_groups.pop(group.id, None)
            self._record("member", parent_id, member_id=group.id, added=False, member_kind="group")
        del self.groups[group.id]
        for user_id in group.members:
            self._member_of.get(user_id, {}).pop(group.id, None)
        for child in group.member_groups:
            self._parents.get(child, {}).pop(group.id, None)
        self._record("group", group.id, deleted=True)

    def add_member(self, group_id: str, member_id: str) -> None:
        """Add a direct member, a user or a group; a no-op when it is one already. A group cannot be
        its own member (``ValueError``); cycles through other groups are allowed."""
        group = self.group(group_id)
        if member_id.lower() in self.groups:
            child = self.groups[member_id.lower()]
            if child.id == group.id:
                raise ValueError(f"group {group_id} cannot be a member of itself")
            if child.id in group.member_groups:
                return
            group.member_groups[child.id] = None
            self._parents.setdefault(child.id, {})[group.id] = None
            self._record("member", group.id, member_id=child.id, added=True, member_kind="group")
            return
        user = self.present_user(member_id)
        if user.id in group.members:
            return
        group.members[user.id] = None
        self._member_of.setdefault(user.id, {})[group.id] = None
        self._record("member", group.id, member_id=user.id, added=True)

    def remove_member(self, group_id: str, member_id: str) -> None:
        """Remove a direct member (a user or a group); a no-op when it is none."""
        group = self.group(group_id)
        uid = member_id.lower()
        if uid in group.member_groups:
            del group.member_groups[uid]
            self._parents.get(uid, {}).pop(group.id, None)
            self._record("member", group.id, member_id=uid, added=False, member_kind="group")
            return
        if uid not in group.members:
            return
        del group.members[uid]
        self._member_of.get(uid, {}).pop(group.id, None)
        if not self.users[uid].soft_deleted:
            self._record("member", group.id, member_id=uid, added=False)

    def changes_since(self, seq: int, upto: int | None = None) -> Iterable[Change]:
        """The changes after sequence number ``seq`` (up to and including ``upto``)."""
        return self.log[seq : len(self.log) if upto is None else upto]
