"""Delta query: rounds of pages over the tenant, opaque next and delta links, token expiry.

A round is fixed when it starts (which objects, in which order, which member changes); each object is
rendered with its latest state when its page is served. A delta link remembers the change-log position
at the end of its round, so it returns exactly the objects changed since, once each. A group whose
``members@delta`` exceeds the page size is split over several pages, the group repeated on each.
``members@delta`` names users and nested groups, each with its ``@odata.type``, as Graph does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from graphsim.paging import CursorStore
from graphsim.properties import MEMBERS, render_group, render_user
from graphsim.tenant import MemberKind, Tenant

DeltaResource = Literal["users", "groups"]
DEFAULT_TOKEN_LIFETIME = 7 * 24 * 3600.0


class DeltaExpired(Exception):
    """The delta or next link is unknown, expired, or was invalidated."""


@dataclass(frozen=True)
class DeltaQuery:
    """What a delta round reads: the resource, the selected properties, optionally a set of ids."""

    resource: DeltaResource
    select: tuple[str, ...]
    ids: frozenset[str] | None = None

    @property
    def with_members(self) -> bool:
        return self.resource == "groups" and MEMBERS in self.select


@dataclass(frozen=True)
class Entry:
    """One object of a round; for groups with members selected, a slice of its ``members@delta``."""

    object_id: str
    members: tuple[tuple[str, bool, MemberKind], ...] | None = None

    @property
    def cost(self) -> int:
        return max(1, len(self.members or ()))


@dataclass(frozen=True)
class _Round:
    query: DeltaQuery
    entries: list[Entry]
    end_seq: int
    issued_at: float


@dataclass(frozen=True)
class _Position:
    round: _Round
    offset: int


@dataclass(frozen=True)
class _Mark:
    query: DeltaQuery
    seq: int
    issued_at: float


@dataclass(frozen=True)
class DeltaPage:
    """One page: the objects, and either the token of the next page or the delta token."""

    value: list[dict[str, Any]]
    next_token: str | None = None
    delta_token: str | None = None


def _chunks(group_id: str, changes: list[tuple[str, bool, MemberKind]], size: int) -> list[Entry]:
    if not changes:
        return [Entry(group_id, ())]
    return [Entry(group_id, tuple(changes[i : i + size])) for i in range(0, len(changes), size)]


class DeltaLinks:
    """Serves delta pages for one tenant and remembers the links it handed out."""

    def __init__(self, tenant: Tenant, clock: Callable[[], float]) -> None:
        self.tenant = tenant
        self.clock = clock
        self.token_lifetime = DEFAULT_TOKEN_LIFETIME
        self._positions: CursorStore[_Position] = CursorStore(capacity=20_000)
        self._marks: CursorStore[_Mark] = CursorStore(capacity=200_000)

    def expire_all(self) -> None:
        """Invalidate every next and delta link issued so far."""
        self._positions.clear()
        self._marks.clear()

    def initial(self, query: DeltaQuery, page_size: int) -> DeltaPage:
        """The first page of a full round."""
        return self._serve(_Round(query, self._all_entries(query, page_size), self.tenant.seq, self.clock()), 0, page_size)

    def latest(self, query: DeltaQuery) -> DeltaPage:
        """``$deltatoken=latest``: no objects, a delta link from now."""
        return DeltaPage([], delta_token=self._marks.put(_Mark(query, self.tenant.seq, self.clock())))

    def resume(self, resource: DeltaResource, token: str, page_size: int) -> DeltaPage:
        """The first page of the changes since the delta link ``token`` was issued."""
        mark = self._marks.get(token)
        if mark is None or mark.query.resource != resource or self._expired(mark.issued_at):
            raise DeltaExpired(token)
        entries = self._changed_entries(mark.query, mark.seq, page_size)
        return self._serve(_Round(mark.query, entries, self.tenant.seq, self.clock()), 0, page_size)

    def next_page(self, resource: DeltaResource, token: str, page_size: int) -> DeltaPage:
        """The page a next link ``token`` points at."""
        position = self._positions.get(token)
        if position is None or position.round.query.resource != resource or self._expired(position.round.issued_at):
            raise DeltaExpired(token)
        return self._serve(position.round, position.offset, page_size)

    def _expired(self, issued_at: float) -> bool:
        return self.clock() - issued_at > self.token_lifetime

    def _serve(self, round_: _Round, offset: int, page_size: int) -> DeltaPage:
        end, cost = offset, 0
        while end < len(round_.entries) and (end == offset or cost + round_.entries[end].cost <= page_size):
            cost += round_.entries[end].cost
            end += 1
        value = [self._render(round_.query, entry) for entry in round_.entries[offset:end]]
        if end < len(round_.entries):
            return DeltaPage(value, next_token=self._positions.put(_Position(round_, end)))
        return DeltaPage(value, delta_token=self._marks.put(_Mark(round_.query, round_.end_seq, self.clock())))

    def _all_entries(self, query: DeltaQuery, page_size: int) -> list[Entry]:
        ids = query.ids
        if query.resource == "users":
            return [Entry(uid) for uid, u in self.tenant.users.items() if not u.soft_deleted and (ids is None or uid in ids)]
        entries: list[Entry] = []
        for gid in self.tenant.groups:
            if ids is not None and gid not in ids:
                continue
            if query.with_members:
                added: list[tuple[str, bool, MemberKind]] = [(uid, True, "user") for uid in self.tenant.visible_members(gid)]
                added.extend((child, True, "group") for child in self.tenant.member_groups(gid))
                entries.extend(_chunks(gid, added, page_size))
            else:
                entries.append(Entry(gid))
        return entries

    def _changed_entries(self, query: DeltaQuery, seq: int, page_size: int) -> list[Entry]:
        ids = query.ids
        if query.resource == "users":
            users: dict[str, None] = {}
            for change in self.tenant.changes_since(seq):
                if change.kind == "user" and (ids is None or change.object_id in ids):
                    users[change.object_id] = None
            return [Entry(uid) for uid in users]
        touched: dict[str, dict[str, tuple[bool, MemberKind]]] = {}
        for change in self.tenant.changes_since(seq):
            if ids is not None and change.object_id not in ids:
                continue
            if change.kind == "group":
                touched.setdefault(change.object_id, {})
            elif change.kind == "member" and query.with_members:
                members = touched.setdefault(change.object_id, {})
                members.pop(change.member_id, None)
                members[change.member_id] = (change.added, change.member_kind)
        entries: list[Entry] = []
        for gid, members in touched.items():
            if gid in self.tenant.groups and query.with_members:
                changes = [(mid, added, kind) for mid, (added, kind) in members.items()]
                entries.extend(_chunks(gid, changes, page_size))
            else:
                entries.append(Entry(gid))
        return entries

    def _render(self, query: DeltaQuery, entry: Entry) -> dict[str, Any]:
        if query.resource == "users":
            user = self.tenant.users.get(entry.object_id)
            if user is None:
                return {"id": entry.object_id, "@removed": {"reason": "deleted"}}
            if user.soft_deleted:
                return {"id": entry.object_id, "@removed": {"reason": "changed"}}
            return render_user(user, query.select)
        group = self.tenant.groups.get(entry.object_id)
        if group is None:
            return {"id": entry.object_id, "@removed": {"reason": "deleted"}}
        out = render_group(group, query.select)
        if entry.members is not None:
            out["members@delta"] = [member_delta(mid, added, kind) for mid, added, kind in entry.members]
        return out


def member_delta(member_id: str, added: bool, kind: MemberKind = "user") -> dict[str, Any]:
    """One ``members@delta`` item: a user or a group, with ``@removed`` when it left."""
    item: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{kind}", "id": member_id}
    if not added:
        item["@removed"] = {"reason": "deleted"}
    return item
