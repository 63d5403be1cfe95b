"""The HTTP surface: Graph routes under ``/v1.0`` and the control routes under ``/_sim``.

Every Graph request is counted in ``sim.calls`` by operation, then checked for the bearer token
(401) and for an injected failure (429 with ``Retry-After``, or another status), in that order.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from graphsim import batch
from graphsim.control import control_routes
from graphsim.delta import DeltaExpired, DeltaPage, DeltaQuery, DeltaResource
from graphsim.handshake import validate_endpoint
from graphsim.paging import CursorStore
from graphsim.properties import GROUP_PROPERTIES, group_select, render_group, render_user, user_select
from graphsim.query import max_page_size, parse_id_filter, parse_property_filter, parse_select, parse_top
from graphsim.responses import (
    GraphHTTPError,
    handle_graph_error,
    handle_method_not_allowed,
    handle_not_found,
    json_response,
)

if TYPE_CHECKING:
    from graphsim.simulator import GraphSimulator

MAX_GROUP_FILTER_IDS = 50
MEMBERS_PAGE = 100
MEMBERS_MAX_TOP = 999
CHECK_MEMBER_GROUPS_MAX = 20
USER_CAST = "microsoft.graph.user"
USER_FILTER_PROPERTIES = ("id", "userPrincipalName", "mail")
"""The user properties ``GET /users?$filter=`` takes an ``eq`` on here (Graph takes more)."""


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GraphHTTPError(400, "BadRequest", "Unable to read JSON request payload.") from None


class GraphApi:
    """The ``/v1.0`` routes of one simulator."""

    def __init__(self, sim: GraphSimulator) -> None:
        self.sim = sim
        self.app: Any = None
        """The whole application, for the requests of a ``$batch`` (set by :func:`build_app`)."""
        self._member_pages: CursorStore[tuple[str, list[str], tuple[str, ...], int, int]] = CursorStore(5_000)

    def routes(self) -> list[Route]:
        return [
            Route("/users", self.list_users, methods=["GET"]),
            Route("/users/delta", self.users_delta, methods=["GET"]),
            Route("/users/{id}", self.get_user, methods=["GET"]),
            Route("/users/{id}/memberOf", self.member_of, methods=["GET"]),
            Route("/users/{id}/checkMemberGroups", self.check_member_groups, methods=["POST"]),
            Route("/groups/delta", self.groups_delta, methods=["GET"]),
            Route("/groups/{id}", self.get_group, methods=["GET"]),
            Route("/groups/{id}/members", self.list_members, methods=["GET"]),
            Route("/groups/{id}/transitiveMembers", self.list_transitive_members, methods=["GET"]),
            Route(f"/groups/{{id}}/transitiveMembers/{USER_CAST}", self.list_transitive_users, methods=["GET"]),
            Route("/subscriptions", self.create_subscription, methods=["POST"]),
            Route("/subscriptions", self.list_subscriptions, methods=["GET"]),
            Route("/subscriptions/{id}", self.get_subscription, methods=["GET"]),
            Route("/subscriptions/{id}", self.renew_subscription, methods=["PATCH"]),
            Route("/subscriptions/{id}", self.delete_subscription, methods=["DELETE"]),
            Route("/subscriptions/{id}/reauthorize", self.reauthorize, methods=["POST"]),
            Route("/$batch", self.batch, methods=["POST"]),
        ]

    async def batch(self, request: Request) -> Response:
        """JSON batching (:mod:`graphsim.batch`): each request runs through these routes on its own."""
        self._enter(request, "batch")
        try:
            doc = orjson.loads(await request.body())
            answer = await batch.run(self.app, "/v1.0", doc, request.headers.get("authorization"))
            self.sim.calls["batched requests"] += len(answer["responses"])
        except (orjson.JSONDecodeError, batch.BatchError) as exc:
            raise GraphHTTPError(400, "BadRequest", str(exc)) from None
        return json_response(answer)

    def _enter(self, request: Request, operation: str) -> None:
        self.sim.calls[operation] += 1
        expected = self.sim.token
        if expected is not None:
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
                message = "Access token is empty." if not header else "Access token validation failure. Invalid audience."
                raise GraphHTTPError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": 'Bearer realm=""'})
        injection = self.sim.faults.take(request.url.path)
        if injection is not None:
            raise GraphHTTPError(injection.status, injection.code, injection.message, injection.headers)

    @staticmethod
    def _base(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}/v1.0"

    # -- users and groups ---------------------------------------------------------------------

    async def get_user(self, request: Request) -> Response:
        self._enter(request, "get_user")
        select = user_select(parse_select(request.query_params.get("$select")))
        key = request.path_params["id"]
        user = self.sim.tenant.find_user(key)
        if user is None:
            raise _not_found(key)
        body = {"@odata.context": f"{self._base(request)}/$metadata#users/$entity", **render_user(user, select)}
        return json_response(body)

    async def list_users(self, request: Request) -> Response:
        """``GET /users?$filter=mail eq '…'`` (or ``userPrincipalName``, ``id``): the present users
        whose value matches without regard to case, as Graph compares them. Without a filter: 400
        here (listing the whole tenant is not simulated)."""
        self._enter(request, "list_users")
        select = user_select(parse_select(request.query_params.get("$select")))
        raw = request.query_params.get("$filter")
        if raw is None:
            raise GraphHTTPError(400, "Request_UnsupportedQuery", "The simulator lists users only with $filter.")
        name, value = parse_property_filter(raw, USER_FILTER_PROPERTIES)
        attribute = {"id": "id", "userPrincipalName": "user_principal_name", "mail": "mail"}[name]
        wanted = value.casefold()
        value_list = [
            render_user(user, select)
            for user in self.sim.tenant.users.values()
            if not user.soft_deleted and (getattr(user, attribute) or "").casefold() == wanted
        ]
        return json_response({"@odata.context": f"{self._base(request)}/$metadata#users", "value": value_list})

    async def member_of(self, request: Request) -> Response:
        self._enter(request, "list_member_of")
        select = group_select(parse_select(request.query_params.get("$select")), allow_members=False)
        key = request.path_params["id"]
        user = self.sim.tenant.find_user(key)
        if user is None:
            raise _not_found(key)
        value = [
            {"@odata.type": "#microsoft.graph.group", **render_group(self.sim.tenant.groups[gid], select)}
            for gid in self.sim.tenant.groups_of(user.id)
        ]
        return json_response({"@odata.context": f"{self._base(request)}/$metadata#directoryObjects", "value": value})

    async def check_member_groups(self, request: Request) -> Response:
        self._enter(request, "check_member_groups")
        key = request.path_params["id"]
        user = self.sim.tenant.find_user(key)
        if user is None:
            raise _not_found(key)
        body = await _json_body(request)
        ids = body.get("groupIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise GraphHTTPError(400, "Request_BadRequest", "groupIds must be a list of group ids.")
        if len(ids) > CHECK_MEMBER_GROUPS_MAX:
            raise GraphHTTPError(400, "Request_BadRequest", f"At most {CHECK_MEMBER_GROUPS_MAX} groupIds are allowed.")
        mine = set(self.sim.tenant.groups_of(user.id))
        return json_response({"value": [i for i in ids if i.lower() in mine]})

    async def get_group(self, request: Request) -> Response:
        self._enter(request, "get_group")
        select = group_select(parse_select(request.query_params.get("$select")), allow_members=False)
        key = request.path_params["id"]
        group = self.sim.tenant.groups.get(key.lower())
        if group is None:
            raise _not_found(key)
        body = {"@odata.context": f"{self._base(request)}/$metadata#groups/$entity", **render_group(group, select)}
        return json_response(body)

    async def list_members(self, request: Request) -> Response:
        self._enter(request, "list_members")
        return self._directory_objects(request, "members", self._direct_members)

    async def list_transitive_members(self, request: Request) -> Response:
        self._enter(request, "list_transitive_members")
        return self._directory_objects(request, "transitiveMembers", self._transitive_members)

    async def list_transitive_users(self, request: Request) -> Response:
        self._enter(request, "list_transitive_users")
        return self._directory_objects(request, "transitiveMembers/microsoft.graph.user", self._transitive_users)

    def _direct_members(self, group_id: str) -> list[str]:
        return self.sim.tenant.visible_members(group_id) + self.sim.tenant.member_groups(group_id)

    def _transitive_members(self, group_id: str) -> list[str]:
        users, groups = self.sim.tenant.transitive_members(group_id)
        return users + groups

    def _transitive_users(self, group_id: str) -> list[str]:
        return self.sim.tenant.transitive_members(group_id)[0]

    def _directory_objects(self, request: Request, listing: str, member_ids: Callable[[str], list[str]]) -> Response:
        """A paged listing of a group's members (users, then groups), fixed when its first page is read."""
        group_id = request.path_params["id"].lower()
        key = f"{group_id}/{listing}"
        params = request.query_params
        skip = params.get("$skiptoken")
        if skip is not None:
            cursor = self._member_pages.get(skip)
            if cursor is None or cursor[0] != key:
                raise GraphHTTPError(400, "Request_BadRequest", "The $skiptoken is invalid or expired.")
            _, ids, select, top, offset = cursor
        else:
            if group_id not in self.sim.tenant.groups:
                raise _not_found(group_id)
            select = tuple(parse_select(params.get("$select")) or ())
            user_select(list(select) or None)  # an unknown property: 400 before any page
            top = parse_top(params.get("$top"), MEMBERS_PAGE, MEMBERS_MAX_TOP)
            ids, offset = member_ids(group_id), 0
        users_only = listing.endswith(USER_CAST)
        value = []
        for member_id in ids[offset : offset + top]:
            item = self._directory_object(member_id, select, users_only=users_only)
            if item is not None:
                value.append(item)
        base = self._base(request)
        context = "users" if users_only else "directoryObjects"
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{context}", "value": value}
        if offset + top < len(ids):
            token = self._member_pages.put((key, ids, select, top, offset + top))
            body["@odata.nextLink"] = f"{base}/groups/{group_id}/{listing}?$skiptoken={token}"
        return json_response(body)

    def _directory_object(self, member_id: str, select: tuple[str, ...], *, users_only: bool) -> dict[str, Any] | None:
        """A member as a listing shows it (``$select`` applies to users and groups alike, each taking
        the properties it has); None when it is gone since the listing started."""
        user = self.sim.tenant.find_user(member_id)
        if user is not None:
            return {"@odata.type": "#microsoft.graph.user", **render_user(user, user_select(list(select) or None))}
        group = None if users_only else self.sim.tenant.groups.get(member_id)
        if group is None:
            return None
        names = [name for name in select if name.lower() in GROUP_PROPERTIES]
        chosen = group_select(names, allow_members=False) if select else group_select(None, allow_members=False)
        return {"@odata.type": "#microsoft.graph.group", **render_group(group, chosen)}

    # -- delta ------------------------------------------------------------------------------------

    async def users_delta(self, request: Request) -> Response:
        self._enter(request, "users_delta")
        return self._delta(request, "users")

    async def groups_delta(self, request: Request) -> Response:
        self._enter(request, "groups_delta")
        return self._delta(request, "groups")

    def _delta(self, request: Request, resource: DeltaResource) -> Response:
        params = request.query_params
        for unsupported in ("$orderby", "$expand", "$search"):
            if unsupported in params:
                raise GraphHTTPError(400, "Request_UnsupportedQuery", f"{unsupported} is not supported with delta.")
        requested = max_page_size(request.headers.get("prefer"))
        page_size = requested or self.sim.delta_page_size
        try:
            if "$skiptoken" in params:
                page = self.sim.delta.next_page(resource, params["$skiptoken"], page_size)
            elif "$deltatoken" in params and params["$deltatoken"] != "latest":
                page = self.sim.delta.resume(resource, params["$deltatoken"], page_size)
            else:
                query = self._delta_query(request, resource)
                if params.get("$deltatoken") == "latest":
                    page = self.sim.delta.latest(query)
                else:
                    page = self.sim.delta.initial(query, page_size)
        except DeltaExpired:
            raise GraphHTTPError(
                410,
                "syncStateNotFound",
                "The sync state generation is not found or has expired. Start a new full synchronization.",
            ) from None
        headers = {"Preference-Applied": f"odata.maxpagesize={requested}"} if requested else None
        return json_response(self._delta_body(request, resource, page), headers=headers)

    def _delta_query(self, request: Request, resource: DeltaResource) -> DeltaQuery:
        items = parse_select(request.query_params.get("$select"))
        if resource == "users":
            select = user_select(items)
            ids = parse_id_filter(request.query_params.get("$filter"), None)
        else:
            select = group_select(items, allow_members=True)
            ids = parse_id_filter(request.query_params.get("$filter"), MAX_GROUP_FILTER_IDS)
        return DeltaQuery(resource, select, ids)

    def _delta_body(self, request: Request, resource: DeltaResource, page: DeltaPage) -> dict[str, Any]:
        base = self._base(request)
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{resource}/delta", "value": page.value}
        if page.next_token is not None:
            body["@odata.nextLink"] = f"{base}/{resource}/delta?$skiptoken={page.next_token}"
        if page.delta_token is not None:
            body["@odata.deltaLink"] = f"{base}/{resource}/delta?$deltatoken={page.delta_token}"
        return body

    # -- subscriptions ----------------------------------------------------------------------------

    async def create_subscription(self, request: Request) -> Response:
        self._enter(request, "create_subscription")
        sub = self.sim.registry.prepare(await _json_body(request))
        try:
            urls = [sub.notification_url] + ([sub.lifecycle_url] if sub.lifecycle_url else [])
            for url in urls:
                if not await validate_endpoint(self.sim.delivery.session, url, self.sim.handshake_timeout):
                    raise GraphHTTPError(
                        400,
                        "InvalidRequest",
                        "Subscription validation request failed. Notification endpoint must respond with "
                        f"200 OK to validation request ({url}).",
                    )
        except BaseException:
            self.sim.registry.release(sub)
            raise
        self.sim.registry.commit(sub)
        body = {"@odata.context": f"{self._base(request)}/$metadata#subscriptions/$entity", **sub.as_graph()}
        return json_response(body, status=201)

    async def list_subscriptions(self, request: Request) -> Response:
        self._enter(request, "list_subscriptions")
        value = [sub.as_graph() for sub in self.sim.registry.live().values()]
        return json_response({"@odata.context": f"{self._base(request)}/$metadata#subscriptions", "value": value})

    async def get_subscription(self, request: Request) -> Response:
        self._enter(request, "get_subscription")
        sub = self.sim.registry.get(request.path_params["id"])
        return json_response({"@odata.context": f"{self._base(request)}/$metadata#subscriptions/$entity", **sub.as_graph()})

    async def renew_subscription(self, request: Request) -> Response:
        self._enter(request, "renew_subscription")
        sub = self.sim.registry.renew(request.path_params["id"], await _json_body(request))
        return json_response({"@odata.context": f"{self._base(request)}/$metadata#subscriptions/$entity", **sub.as_graph()})

    async def delete_subscription(self, request: Request) -> Response:
        self._enter(request, "delete_subscription")
        sub = self.sim.registry.get(request.path_params["id"])
        self.sim.registry.remove(sub.id)
        return Response(status_code=204)

    async def reauthorize(self, request: Request) -> Response:
        self._enter(request, "reauthorize")
        self.sim.registry.get(request.path_params["id"])
        return Response(status_code=204)


def _not_found(key: str) -> GraphHTTPError:
    return GraphHTTPError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def build_app(sim: GraphSimulator) -> Starlette:
    """The simulator's ASGI application."""
    api = GraphApi(sim)
    app = Starlette(
        routes=[Mount("/v1.0", routes=api.routes()), Mount("/_sim", routes=control_routes(sim))],
        exception_handlers={GraphHTTPError: handle_graph_error, 404: handle_not_found, 405: handle_method_not_allowed},
    )
    api.app = app
    return app
