"""In-memory stand-ins for the engine's two clients: just the methods :class:`~reactor.sync.engine.SyncEngine`
(and :mod:`reactor.sync.apply`) call on :class:`~reactor.graph.reader.GraphReader` and
:class:`~reactor.scim.client.AskCodyClient`, behaving as the real ones do on the answers that matter
(a user Graph answers 404 for reads as ``None``; a SCIM id AskCody does not hold raises
:class:`~reactor.errors.NotFoundError`).

The engine's fast tests use them; the end-to-end tests run the real clients against the Graph
simulator and scim2-server.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, cast

from reactor.domain.model import EntraGroup, EntraUser, ScimGroup, ScimUser, UserAttributes
from reactor.errors import NotFoundError, ReactorError
from reactor.graph.reader import GraphReader, GroupChange, GroupMembers, GroupsDelta, UserIdsDelta, UsersDelta
from reactor.scim.client import AskCodyClient

GROUPS_LINK = "delta:groups"
USERS_LINK = "delta:users"


class FakeGraph:
    """Entra as the engine reads it: users, groups with direct members, and delta rounds.

    Every membership change and user change is logged; a delta round reports the changes after the
    position kept by the last :meth:`commit` (the first round, with nothing kept, is a full one).
    """

    def __init__(self) -> None:
        self.users: dict[str, EntraUser] = {}
        self.groups: dict[str, str] = {}
        """Entra group id → displayName."""
        self.members: dict[str, set[str]] = {}
        self.failing: dict[str, ReactorError] = {}
        """Entra user id → the error every read of that user raises."""
        self.links: dict[str, int] = {}
        """What :meth:`commit` kept: link key → position in the change log."""
        self._group_log: list[tuple[str, str, str]] = []  # (group id, user id or "", "added"/"removed"/"deleted")
        self._user_log: list[str] = []
        self.reads: list[str] = []

    # the tenant, as a test changes it -------------------------------------------------------------
    def add_user(self, user: EntraUser) -> EntraUser:
        self.users[user.id] = user
        self._user_log.append(user.id)
        return user

    def change_user(self, user_id: str, **changes: Any) -> EntraUser:
        return self.add_user(dataclasses.replace(self.users[user_id], **changes))

    def delete_user(self, user_id: str) -> None:
        """Gone for good: Graph answers 404 for it, a users delta reports it ``@removed`` (deleted)."""
        del self.users[user_id]
        self._user_log.append(user_id)
        for gid, members in self.members.items():
            if user_id in members:
                members.discard(user_id)
                self._group_log.append((gid, user_id, "removed"))

    def add_group(self, group_id: str, display_name: str, members: Iterable[str] = ()) -> None:
        self.groups[group_id] = display_name
        self.members[group_id] = set()
        for uid in members:
            self.add_member(group_id, uid)

    def add_member(self, group_id: str, user_id: str) -> None:
        self.members[group_id].add(user_id)
        self._group_log.append((group_id, user_id, "added"))

    def remove_member(self, group_id: str, user_id: str) -> None:
        self.members[group_id].discard(user_id)
        self._group_log.append((group_id, user_id, "removed"))

    def delete_group(self, group_id: str) -> None:
        del self.groups[group_id]
        del self.members[group_id]
        self._group_log.append((group_id, "", "deleted"))

    # what the engine calls ------------------------------------------------------------------------
    async def get_user(self, user_id: str) -> EntraUser | None:
        self.reads.append(user_id)
        if user_id in self.failing:
            raise self.failing[user_id]
        return self.users.get(user_id)

    async def get_group(self, group_id: str) -> EntraGroup | None:
        if group_id not in self.groups:
            return None
        return EntraGroup(group_id, self.groups[group_id])

    async def group_member_ids(self, group_id: str) -> set[str]:
        if group_id not in self.members:
            raise NotFoundError(f"GET groups/{group_id}/members: answered 404")
        return set(self.members[group_id])

    async def group_members(self, group_id: str, users_read: dict[str, EntraUser] | None = None) -> GroupMembers:
        """Direct members: users only (this fake has no nested groups). ``users_read`` is left as it is:
        the engine then reads each user through :meth:`get_user`, which a test can make fail."""
        return GroupMembers(frozenset(await self.group_member_ids(group_id)), frozenset())

    def groups_delta_key(self, group_ids: Iterable[str]) -> str:
        return "delta:groups:" + ",".join(sorted(group_ids))

    async def groups_delta(self, group_ids: Iterable[str] | None = None, *, commit: bool = True) -> GroupsDelta:
        start = self.links.get(GROUPS_LINK)
        if start is None:
            groups = {
                gid: GroupChange(name, False, frozenset(self.members[gid]), frozenset())
                for gid, name in self.groups.items()
            }
        else:
            added: dict[str, set[str]] = {}
            removed: dict[str, set[str]] = {}
            deleted: set[str] = set()
            for gid, uid, what in self._group_log[start:]:
                if what == "deleted":
                    deleted.add(gid)
                    continue
                (added if what == "added" else removed).setdefault(gid, set()).add(uid)
                (removed if what == "added" else added).get(gid, set()).discard(uid)
            groups = {
                gid: GroupChange(self.groups.get(gid), gid in deleted, frozenset(added.get(gid, ())),
                                 frozenset(removed.get(gid, ())))
                for gid in sorted(set(added) | set(removed) | deleted)
            }
        if group_ids is not None:
            groups = {gid: c for gid, c in groups.items() if gid in set(group_ids)}
        delta = GroupsDelta(groups=groups, full=start is None, links={GROUPS_LINK: str(len(self._group_log))})
        if commit:
            await self.commit(delta)
        return delta

    async def users_delta(self, *, commit: bool = True) -> UsersDelta:
        start = self.links.get(USERS_LINK)
        ids = list(self.users) if start is None else list(dict.fromkeys(self._user_log[start:]))
        users = [self.users.get(uid) or EntraUser(uid, state="hard_deleted") for uid in ids]
        delta = UsersDelta(users=users, full=start is None, links={USERS_LINK: str(len(self._user_log))})
        if commit:
            await self.commit(delta)
        return delta

    async def users_delta_ids(self, keep: Callable[[str], bool] = lambda _: True, *, commit: bool = True) -> UserIdsDelta:
        delta = await self.users_delta(commit=False)
        ids = UserIdsDelta(ids=frozenset(u.id for u in delta.users if keep(u.id)), full=delta.full, links=delta.links)
        if commit:
            await self.commit(ids)
        return ids

    async def commit(self, delta: UsersDelta | UserIdsDelta | GroupsDelta) -> None:
        for key, link in delta.links.items():
            self.links[key] = int(link)

    def as_reader(self) -> GraphReader:
        """Typed as the reader the engine takes (it calls only the methods above)."""
        return cast(GraphReader, self)


@dataclasses.dataclass
class _User:
    id: str
    attrs: dict[str, str | None]
    active: bool


class FakeAskCody:
    """AskCody's SCIM side: users and groups by SCIM id, and every write in :attr:`writes`.

    :attr:`failing` makes a method raise: method name → the error, raised by every call of it.
    """

    def __init__(self) -> None:
        self.users: dict[str, _User] = {}
        self.groups: dict[str, ScimGroup] = {}
        self.writes: list[tuple[Any, ...]] = []
        """(method, arguments...) of every call that changes AskCody, in order."""
        self.failing: dict[str, ReactorError] = {}
        self._ids = itertools.count(1)

    # views for the tests ------------------------------------------------------------------------
    def user(self, user_name: str) -> ScimUser:
        """The AskCody user with this userName; AssertionError when there is none."""
        for u in self.users.values():
            if (u.attrs["user_name"] or "").casefold() == user_name.casefold():
                return self._scim_user(u)
        held = sorted(str(u.attrs["user_name"]) for u in self.users.values())
        raise AssertionError(f"AskCody holds no user {user_name!r} (it holds {held})")

    def group(self, display_name: str) -> ScimGroup:
        """The AskCody group with this displayName; AssertionError when there is none."""
        for g in self.groups.values():
            if g.display_name == display_name:
                return g
        held = sorted(g.display_name for g in self.groups.values())
        raise AssertionError(f"AskCody holds no group {display_name!r} (it holds {held})")

    def member_names(self, display_name: str) -> set[str]:
        """userNames of the members of the AskCody group with this displayName."""
        return {str(self.users[m].attrs["user_name"]) for m in self.group(display_name).members}

    # what the engine and apply call -------------------------------------------------------------
    def _check(self, method: str) -> None:
        if method in self.failing:
            raise self.failing[method]

    def _scim_user(self, u: _User) -> ScimUser:
        a = u.attrs
        return ScimUser(
            id=u.id, user_name=str(a["user_name"]), external_id=a["external_id"], active=u.active,
            display_name=a["display_name"], given_name=a["given_name"], family_name=a["family_name"],
            email=a["email"], cost_center=a["cost_center"],
            groups=frozenset(g.id for g in self.groups.values() if u.id in g.members),
        )

    def _get(self, scim_id: str) -> _User:
        if scim_id not in self.users:
            raise NotFoundError(f"GET /Users/{scim_id}: answered 404")
        return self.users[scim_id]

    async def get_user(self, scim_id: str, *, with_groups: bool = True) -> ScimUser:
        self._check("get_user")
        return self._scim_user(self._get(scim_id))

    async def find_user(self, external_id: str, user_name: str | None = None, email: str | None = None) -> ScimUser | None:
        self._check("find_user")
        for key, value in (("external_id", external_id), ("user_name", user_name), ("email", email)):
            for u in self.users.values():
                if value and (u.attrs[key] or "").casefold() == value.casefold():
                    return self._scim_user(u)
        return None

    async def create_user(self, attrs: UserAttributes, *, active: bool = True) -> tuple[ScimUser, bool]:
        self._check("create_user")
        self.writes.append(("create_user", attrs.user_name, active))
        u = _User(f"scim-user-{next(self._ids)}", attrs.as_dict(), active)
        self.users[u.id] = u
        return self._scim_user(u), True

    async def update_user(self, scim_id: str, changes: Mapping[str, str | None], *, version: str | None = None) -> str | None:
        self._check("update_user")
        self.writes.append(("update_user", scim_id, dict(changes)))
        self._get(scim_id).attrs.update(changes)
        return None  # versionless, as a server without ETags: the real one's are tested over HTTP

    async def set_active(self, scim_id: str, active: bool, *, version: str | None = None) -> str | None:
        self._check("set_active")
        self.writes.append(("set_active", scim_id, active))
        self._get(scim_id).active = active
        return None

    async def delete_user(self, scim_id: str) -> bool:
        self._check("delete_user")
        self.writes.append(("delete_user", scim_id))
        for gid, g in self.groups.items():
            self.groups[gid] = dataclasses.replace(g, members=g.members - {scim_id})
        return self.users.pop(scim_id, None) is not None

    async def ensure_group(self, external_id: str, display_name: str) -> ScimGroup:
        self._check("ensure_group")
        for g in self.groups.values():
            if g.external_id == external_id:
                return g
        self.writes.append(("ensure_group", external_id, display_name))
        group = ScimGroup(f"scim-group-{next(self._ids)}", display_name, external_id)
        self.groups[group.id] = group
        return group

    async def add_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None:
        self._check("add_members")
        ids = frozenset(user_ids)
        self.writes.append(("add_members", scim_group_id, sorted(ids)))
        g = self.groups[scim_group_id]
        self.groups[scim_group_id] = dataclasses.replace(g, members=g.members | ids)

    async def remove_members(self, scim_group_id: str, user_ids: Iterable[str]) -> None:
        self._check("remove_members")
        ids = frozenset(user_ids)
        self.writes.append(("remove_members", scim_group_id, sorted(ids)))
        g = self.groups[scim_group_id]
        self.groups[scim_group_id] = dataclasses.replace(g, members=g.members - ids)

    async def list_users(self) -> AsyncIterator[ScimUser]:
        self._check("list_users")
        for u in list(self.users.values()):
            yield dataclasses.replace(self._scim_user(u), groups=frozenset())

    async def count_users(self) -> int:
        self._check("list_users")
        return len(self.users)

    async def get_group(self, scim_id: str) -> ScimGroup:
        self._check("get_group")
        if scim_id not in self.groups:
            raise NotFoundError(f"GET /Groups/{scim_id}: answered 404")
        return self.groups[scim_id]

    def as_client(self) -> AskCodyClient:
        """Typed as the client the engine takes (it calls only the methods above)."""
        return cast(AskCodyClient, self)
