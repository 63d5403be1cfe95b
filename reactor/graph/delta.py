"""What delta rounds report, and how their pages are gathered (:class:`~reactor.graph.reader.GraphReader`
feeds each page to an accumulator and drops it): users as objects (:class:`UsersDelta`), users as
ids only (:class:`UserIdsDelta`, what a reconcile needs), groups with their member changes
(:class:`GroupsDelta`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reactor.domain.model import EntraState, EntraUser

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"


class GroupChange(NamedTuple):
    """What a groups delta round says about one group (merged across pages). ``deleted`` when Graph
    reports it ``@removed`` (soft or permanent delete); ``display_name`` None when not reported.
    ``*_member_ids`` are user members, ``*_group_ids`` nested groups (members of type group)."""

    display_name: str | None
    deleted: bool
    added_member_ids: frozenset[str]
    removed_member_ids: frozenset[str]
    added_group_ids: frozenset[str] = frozenset()
    removed_group_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class UsersDelta:
    """Users reported by one delta round; ``full`` when it was a full sync (see the module docstring)."""

    users: list[EntraUser]
    full: bool
    links: dict[str, str] = field(default_factory=dict)
    """Store meta key → the round's new deltaLink; kept by :meth:`GraphReader.commit`."""


@dataclass(frozen=True)
class UserIdsDelta:
    """The ids of the users one delta round reported (only those ``keep`` accepted), page by page:
    what a reconcile needs, without holding every user of a full round at once."""

    ids: frozenset[str]
    full: bool
    links: dict[str, str] = field(default_factory=dict)
    """Store meta key → the round's new deltaLink; kept by :meth:`GraphReader.commit`."""


@dataclass(frozen=True)
class GroupsDelta:
    """Groups in scope reported by one delta round, keyed by group id.

    With ``full`` every group in scope that exists is in ``groups`` with all its user members in
    ``added_member_ids`` and its nested groups in ``added_group_ids``; otherwise ``groups`` holds
    only the groups that changed.
    """

    groups: dict[str, GroupChange]
    full: bool
    links: dict[str, str] = field(default_factory=dict)
    """Store meta key → the round's new deltaLink; kept by :meth:`GraphReader.commit`."""


def removed_state(obj: Mapping[str, Any]) -> EntraState:
    """``present``, or from ``@removed.reason``: ``changed`` → soft_deleted, ``deleted`` → hard_deleted."""
    removed = obj.get("@removed")
    if not isinstance(removed, Mapping):
        return "present"
    return "hard_deleted" if removed.get("reason") == "deleted" else "soft_deleted"


def _is_user(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("@odata.type")
    return kind is None or str(kind).lower() == USER_TYPE


def _is_group(obj: Mapping[str, Any]) -> bool:
    return str(obj.get("@odata.type", "")).lower() == GROUP_TYPE


class _Accumulator:
    def add(self, items: list[Any]) -> None:
        raise NotImplementedError


class _UserAcc(_Accumulator):
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def add(self, items: list[Any]) -> None:
        for obj in items:
            if not isinstance(obj, dict) or "id" not in obj:
                continue
            seen = self.objects.setdefault(str(obj["id"]), {})
            if "@removed" not in obj:
                seen.pop("@removed", None)
            seen.update(obj)


class _IdAcc(_Accumulator):
    def __init__(self, keep: Callable[[str], bool]) -> None:
        self.keep = keep
        self.ids: set[str] = set()

    def add(self, items: list[Any]) -> None:
        keep = self.keep
        for obj in items:
            if isinstance(obj, dict) and "id" in obj:
                uid = str(obj["id"])
                if keep(uid):
                    self.ids.add(uid)


class _GroupAcc(_Accumulator):
    def __init__(self) -> None:
        self.names: dict[str, str | None] = {}
        self.deleted: dict[str, bool] = {}
        self.members: dict[str, dict[str, bool]] = {}
        self.groups: dict[str, dict[str, bool]] = {}

    def add(self, items: list[Any]) -> None:
        for obj in items:
            if not isinstance(obj, dict) or "id" not in obj:
                continue
            gid = str(obj["id"])
            self.names.setdefault(gid, None)
            members = self.members.setdefault(gid, {})
            groups = self.groups.setdefault(gid, {})
            self.deleted[gid] = removed_state(obj) != "present"
            if obj.get("displayName") is not None:
                self.names[gid] = str(obj["displayName"])
            for member in obj.get("members@delta") or ():
                if not isinstance(member, Mapping) or "id" not in member:
                    continue
                # A later page wins for the same member: Graph documents no order, pages are our best one.
                if _is_user(member):
                    members[str(member["id"])] = "@removed" not in member
                elif _is_group(member):
                    groups[str(member["id"])] = "@removed" not in member

    def result(self) -> dict[str, GroupChange]:
        return {
            gid: GroupChange(
                display_name=self.names[gid],
                deleted=self.deleted.get(gid, False),
                added_member_ids=frozenset(m for m, added in members.items() if added),
                removed_member_ids=frozenset(m for m, added in members.items() if not added),
                added_group_ids=frozenset(g for g, added in self.groups[gid].items() if added),
                removed_group_ids=frozenset(g for g, added in self.groups[gid].items() if not added),
            )
            for gid, members in self.members.items()
        }


