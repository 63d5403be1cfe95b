"""Reading users, groups and their changes from Graph, reduced to the domain types of the mapping.

Rules the engine can rely on:

- :meth:`GraphReader.get_user` answers ``None`` when Graph says 404. A soft-deleted user (restorable,
  in ``/directory/deletedItems``) and a user gone for good both read as "not present": either way the
  engine deprovisions, and a restored user comes back through a notification or delta like a new one.
- Delta rounds resume from the deltaLink kept in the store (``delta:users:<select-hash>``,
  ``delta:groups:<chunk-hash>``), follow every ``@odata.nextLink`` (empty pages included), and store
  the new deltaLink only after the last page, so an interrupted round is simply repeated.
- ``full`` on a result says that the round started from scratch (no stored link, or Graph refused
  it as expired): the results are then the whole state and the caller reconciles fully.
- In an incremental round Graph may return only the properties that changed: use the users of an
  incremental :class:`UsersDelta` as change markers and read each with :meth:`get_user` before
  planning (a property Graph left out reads as its default here).
- An object id that is not a GUID raises :class:`~reactor.errors.PermanentError` before any request
  is sent: put into a path, ``.``, ``..`` or an empty id would read another resource (``GET /users``, ``GET /v1.0``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from reactor.config import AttributeSettings
from reactor.domain.model import EntraGroup, EntraUser
from reactor.errors import DeltaTokenExpired, NotFoundError, PermanentError
from reactor.graph.batch import MAX_REQUESTS, get_many
from reactor.graph.client import GraphClient
from reactor.graph.delta import (
    GroupChange,
    GroupsDelta,
    UserIdsDelta,
    UsersDelta,
    _Accumulator,
    _GroupAcc,
    _IdAcc,
    _is_group,
    _is_user,
    _UserAcc,
    removed_state,
)
from reactor.store.base import Meta

__all__ = [
    "GUID", "GraphReader", "GroupChange", "GroupMembers", "GroupsDelta", "UserIdsDelta", "UsersDelta", "chunks",
    "extract_cost_center", "object_id", "parse_user", "removed_state",
]
"""The results of :mod:`reactor.graph.delta` are re-exported: callers import them from here."""

USER_FIELDS = ("id", "userPrincipalName", "displayName", "givenName", "surname", "mail", "accountEnabled")
GROUP_DELTA_SELECT = "displayName,members"
GROUP_FILTER_CHUNK = 50
PAGE_SIZE = 999
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ID_SHOWN = 40
"""How much of a refused id an error message quotes (an id may be of any length)."""

A = TypeVar("A", bound=_Accumulator)


class GroupMembers(NamedTuple):
    """The direct members of a group: users and nested groups."""

    user_ids: frozenset[str]
    group_ids: frozenset[str]


def object_id(kind: str, value: str) -> str:
    """``value``, to be put into a URL path, once it is known to be a GUID.

    Anything else raises :class:`~reactor.errors.PermanentError` (retrying cannot help) and no
    request is sent."""
    if not GUID.fullmatch(value):
        shown = value[:ID_SHOWN] + ("…" if len(value) > ID_SHOWN else "")
        raise PermanentError(f"Entra {kind} id {shown!r} is not a GUID: not read from Graph")
    return value


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def extract_cost_center(obj: Mapping[str, Any], source: str) -> str | None:
    """The cost center out of a user object: ``employeeOrgData/costCenter``,
    ``onPremisesExtensionAttributes/extensionAttributeN`` (a complex property selected whole) or a
    directory extension ``extension_<appId>_<name>`` (a top-level property)."""
    if not source:
        return None
    head, _, tail = source.partition("/")
    value = obj.get(head)
    if tail:
        return _text(value.get(tail)) if isinstance(value, Mapping) else None
    return _text(value)


def parse_user(obj: Mapping[str, Any], cost_center_source: str) -> EntraUser:
    """An :class:`EntraUser` from a Graph user object (a delta entry included)."""
    state = removed_state(obj)
    if state != "present":
        return EntraUser(id=str(obj["id"]), state=state)
    enabled = obj.get("accountEnabled")
    return EntraUser(
        id=str(obj["id"]),
        user_principal_name=obj.get("userPrincipalName") or "",
        display_name=obj.get("displayName"),
        given_name=obj.get("givenName"),
        surname=obj.get("surname"),
        mail=obj.get("mail"),
        account_enabled=enabled if isinstance(enabled, bool) else True,
        cost_center=extract_cost_center(obj, cost_center_source),
    )


def chunks(ids: Iterable[str], size: int = GROUP_FILTER_CHUNK) -> list[tuple[str, ...]]:
    """Sorted ids in chunks of at most ``size`` (Graph's limit for ``id eq`` filters on groups)."""
    ordered = sorted(set(ids))
    return [tuple(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GraphReader:
    """Reads from Graph what the mapping needs; keeps delta links in ``store`` meta.

    ``page_size`` is the ``$top`` of member listings (Graph allows up to 999).
    """

    def __init__(
        self,
        client: GraphClient,
        attributes: AttributeSettings,
        group_ids: frozenset[str],
        store: Meta,
        *,
        page_size: int = PAGE_SIZE,
        batch_reads: bool = True,
    ) -> None:
        self.client = client
        self.batch_reads = batch_reads
        self._waiting: list[tuple[str, asyncio.Future[EntraUser | None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.page_size = page_size
        self.group_ids = group_ids
        self.store = store
        self.cost_center_source = attributes.cost_center
        extra = attributes.cost_center_select
        fields = list(USER_FIELDS)
        if extra and extra not in fields:
            fields.append(extra)
        self.user_select = ",".join(fields)

    # single reads -------------------------------------------------------------------------------
    async def get_user(self, user_id: str) -> EntraUser | None:
        """The user as Graph holds it now, or None when Graph answers 404 (soft-deleted or gone).

        With ``batch_reads`` (the default) reads asked while another is in flight wait for it and
        go together as one ``$batch`` (20 a request): the workers of a bulk share Graph requests, and a
        lone read is sent at once as a plain GET. A batch that fails is asked again user by user, so
        each caller gets its own answer."""
        object_id("user", user_id)
        if not self.batch_reads:
            return await self._get_one(user_id)
        fut: asyncio.Future[EntraUser | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((user_id, fut))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting(), name="reactor-graph-user-reads")
        return await fut

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch = [(uid, f) for uid, f in self._waiting[:MAX_REQUESTS] if not f.done()]
            del self._waiting[:MAX_REQUESTS]
            if not batch:
                continue
            if len(batch) > 1:
                try:
                    users = await self.get_users([uid for uid, _ in batch])
                except Exception:
                    pass  # asked one by one below: each caller gets its own outcome
                else:
                    for uid, f in batch:
                        if not f.done():
                            f.set_result(users.get(uid))
                    continue
            await asyncio.gather(*(self._answer(uid, f) for uid, f in batch))

    async def _answer(self, user_id: str, fut: asyncio.Future[EntraUser | None]) -> None:
        try:
            user = await self._get_one(user_id)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(user)

    async def _get_one(self, user_id: str) -> EntraUser | None:
        try:
            obj = await self.client.get_json(
                f"users/{object_id('user', user_id)}", {"$select": self.user_select}, operation="get_user"
            )
        except NotFoundError:
            return None
        return parse_user(obj, self.cost_center_source)

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, EntraUser | None]:
        """Many users at once (JSON batching, 20 a request: :func:`reactor.graph.batch.get_many`);
        ``None`` for a user Graph answers 404 for, as :meth:`get_user`."""
        paths = {uid: f"users/{object_id('user', uid)}?$select={self.user_select}" for uid in dict.fromkeys(user_ids)}
        bodies = await get_many(self.client, list(paths.values()), operation="get_users")
        return {
            uid: (None if bodies.get(path) is None else parse_user(bodies[path] or {}, self.cost_center_source))
            for uid, path in paths.items()
        }

    async def find_user(self, key: str) -> EntraUser | None:
        """The present user named by ``key``: an object id, else a userPrincipalName, else a mail
        address (``$filter=… eq '…'``, quotes doubled as OData writes them); None when none matches.
        A mail address shared by several users finds none (it names no one person)."""
        if GUID.fullmatch(key):
            return await self.get_user(key)
        literal = "'" + key.replace("'", "''") + "'"
        for prop in ("userPrincipalName", "mail"):
            page = await self.client.get_json(
                "users", {"$filter": f"{prop} eq {literal}", "$select": self.user_select}, operation="find_user"
            )
            found = [obj for obj in page.get("value", ()) if isinstance(obj, dict) and "id" in obj]
            if len(found) == 1:
                return parse_user(found[0], self.cost_center_source)
        return None

    async def get_group(self, group_id: str) -> EntraGroup | None:
        """The group's id and displayName, or None when Graph answers 404."""
        try:
            obj = await self.client.get_json(
                f"groups/{object_id('group', group_id)}", {"$select": "id,displayName"}, operation="get_group"
            )
        except NotFoundError:
            return None
        return EntraGroup(id=str(obj.get("id", group_id)), display_name=obj.get("displayName") or "")

    async def group_members(self, group_id: str, users_read: dict[str, EntraUser] | None = None) -> GroupMembers:
        """The direct members of the group, users and nested groups (all pages). 404 raises NotFoundError.

        ``users_read``: the user members are listed with what :meth:`get_user` reads of a user (its
        ``$select``) and put there, parsed, so that a full sync reads no user on its own: a page of up
        to 999 members costs Graph 2 resource units, and the users read one by one (in ``$batch``)
        cost one each, out of the application's ``graph.max_requests_per_second`` too."""
        users: set[str] = set()
        groups: set[str] = set()
        url: str | None = f"groups/{object_id('group', group_id)}/members"
        select = self.user_select if users_read is not None else "id"
        params: dict[str, str] | None = {"$select": select, "$top": str(self.page_size)}
        while url:
            page = await self.client.get_json(url, params, operation="group_members")
            for m in page.get("value", ()):
                if isinstance(m, dict) and "id" in m:
                    if _is_user(m):
                        users.add(str(m["id"]))
                        if users_read is not None:
                            users_read[str(m["id"])] = parse_user(m, self.cost_center_source)
                    elif _is_group(m):
                        groups.add(str(m["id"]))
            url, params = page.get("@odata.nextLink"), None
        return GroupMembers(frozenset(users), frozenset(groups))

    async def group_member_ids(self, group_id: str) -> set[str]:
        """Ids of the users that are direct members of the group (all pages). 404 raises NotFoundError."""
        return set((await self.group_members(group_id)).user_ids)

    # delta ----------------------------------------------------------------------------------------
    @property
    def users_delta_key(self) -> str:
        """Store meta key of the users deltaLink (bound to the ``$select``, so a new mapping starts over)."""
        return f"delta:users:{_digest(self.user_select)}"

    def groups_delta_key(self, group_ids: Iterable[str]) -> str:
        """Store meta key of the deltaLink for one chunk of group ids."""
        return f"delta:groups:{_digest(GROUP_DELTA_SELECT + '|' + ','.join(sorted(group_ids)))}"

    def _users_start(self) -> tuple[str, dict[str, str]]:
        return "users/delta", {"$select": self.user_select}

    @staticmethod
    def _groups_start(chunk: Iterable[str]) -> tuple[str, dict[str, str]]:
        flt = " or ".join(f"id eq '{gid}'" for gid in chunk)
        return "groups/delta", {"$select": GROUP_DELTA_SELECT, "$filter": flt}

    async def _pages(self, url: str, params: Mapping[str, str] | None, acc: _Accumulator, operation: str) -> str:
        """Follow nextLinks from ``url`` to the end; feed each page to ``acc``; return the deltaLink."""
        next_url: str | None = url
        next_params = params
        while next_url:
            page = await self.client.get_json(next_url, next_params, operation=operation)
            items = page.get("value")
            acc.add(items if isinstance(items, list) else [])
            delta_link = page.get("@odata.deltaLink")
            if delta_link:
                return str(delta_link)
            next_url, next_params = page.get("@odata.nextLink"), None
        raise DeltaTokenExpired(f"Graph {operation}: a page had neither @odata.nextLink nor @odata.deltaLink")

    async def _round(
        self, key: str, start: tuple[str, dict[str, str]], new_acc: Callable[[], A], operation: str, commit: bool
    ) -> tuple[A, bool, str]:
        """One delta round for ``key``: resume from its stored link, or start over when there is none
        or it expired. Returns the pages' content, whether it was a full round, and the new link
        (stored at once only with ``commit``)."""
        link = await self.store.get_meta(key)
        if link:
            acc = new_acc()
            try:
                delta_link = await self._pages(link, None, acc, operation)
            except DeltaTokenExpired:
                await self.store.set_meta(key, None)
            else:
                if commit:
                    await self.store.set_meta(key, delta_link)
                return acc, False, delta_link
        acc = new_acc()
        delta_link = await self._pages(start[0], start[1], acc, operation)
        if commit:
            await self.store.set_meta(key, delta_link)
        return acc, True, delta_link

    async def commit(self, delta: UsersDelta | UserIdsDelta | GroupsDelta) -> None:
        """Keep the deltaLinks of a round read with ``commit=False``: call it once the changes it
        reported are durably handled, so that a crash before that reads them again."""
        for key, link in delta.links.items():
            await self.store.set_meta(key, link)

    async def users_delta(self, *, commit: bool = True) -> UsersDelta:
        """Changed users since the stored deltaLink (or all users on a full sync), each id once.
        With ``commit=False`` the new deltaLink is kept only by :meth:`commit`."""
        key = self.users_delta_key
        acc, full, link = await self._round(key, self._users_start(), _UserAcc, "users_delta", commit)
        users = [parse_user(obj, self.cost_center_source) for obj in acc.objects.values()]
        return UsersDelta(users=users, full=full, links={key: link})

    async def users_delta_ids(self, keep: Callable[[str], bool] = lambda _: True, *, commit: bool = True) -> UserIdsDelta:
        """The ids of the users changed since the stored deltaLink (all on a full round) that ``keep``
        accepts. Each page is dropped once read, so memory holds only the kept ids (a full round of
        100,000 users holds none of their objects). With ``commit=False`` the link is kept only by
        :meth:`commit`."""
        key = self.users_delta_key
        acc, full, link = await self._round(key, self._users_start(), lambda: _IdAcc(keep), "users_delta", commit)
        return UserIdsDelta(ids=frozenset(acc.ids), full=full, links={key: link})

    async def groups_delta(self, group_ids: Iterable[str] | None = None, *, commit: bool = True) -> GroupsDelta:
        """Changes of the groups in scope (default: the configured ones), in chunks of at most 50 ids.

        ``full`` is all or nothing: when any chunk has no stored link or its link expired, every chunk
        starts over, so that a full result is the whole state of every group in scope (a group in
        scope missing from it does not exist). With ``commit=False`` the new deltaLinks are kept
        only by :meth:`commit`.
        """
        ids = self.group_ids if group_ids is None else frozenset(group_ids)
        parts = chunks(ids)
        keys = [self.groups_delta_key(chunk) for chunk in parts]
        full = not all([await self.store.get_meta(key) for key in keys])
        if full:
            for key in keys:
                await self.store.set_meta(key, None)
        merged: dict[str, GroupChange] = {}
        links: dict[str, str] = {}
        for chunk, key in zip(parts, keys, strict=True):
            acc, chunk_full, links[key] = await self._round(key, self._groups_start(chunk), _GroupAcc, "groups_delta", commit)
            if chunk_full and not full:
                # This chunk's link expired while others were read incrementally: start all over.
                for other in keys:
                    await self.store.set_meta(other, None)
                return await self.groups_delta(ids, commit=commit)
            merged.update((gid, change) for gid, change in acc.result().items() if gid in ids)
        return GroupsDelta(groups=merged, full=full, links=links)
