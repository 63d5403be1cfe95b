"""The control API under ``/_sim`` (no auth), for tests and benchmarks that run the simulator as a process.

    POST   /_sim/users                               user fields (see :mod:`seed`) -> 201 {"id"}
    PATCH  /_sim/users/{id}                          changed fields -> 200 {"id"}
    GET    /_sim/users/{id}                          the user with every modelled property
    POST   /_sim/users/{id}/softDelete | restore | hardDelete
    POST   /_sim/groups                              {"display_name", "security_enabled", "id", "members"} -> 201 {"id"}
    PATCH  /_sim/groups/{id}                         {"display_name", ...}
    DELETE /_sim/groups/{id}
    POST   /_sim/groups/{id}/members                 {"id": "<user or group id>"} -> 204
    DELETE /_sim/groups/{id}/members/{uid}           -> 204 (a user or a group)
    POST   /_sim/seed                                a seed document -> counts
    GET    /_sim/faults, POST /_sim/faults           knobs (see :func:`apply_faults`) -> current knobs
    GET    /_sim/calls, DELETE /_sim/calls           Graph request counts per operation; reset them
    GET    /_sim/subscriptions                       live subscriptions by id
    DELETE /_sim/subscriptions/{id}?notify=true      remove_subscription
    POST   /_sim/subscriptions/{id}/lifecycle        {"event": "reauthorizationRequired", "timeout": 10} -> {"delivered"}
    GET    /_sim/stats                               delivery counters, pending, object counts
    GET    /_sim/delivered?limit=N                   the count and the last N delivered change notifications
    POST   /_sim/idle?timeout=S                      wait until no notification is pending (504 on timeout)
    POST   /_sim/clock                               {"advance_seconds": S} (only with an advanceable clock)

Unknown ids answer 404, invalid input 400, both with Graph's error body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphsim.responses import error_response, json_response
from graphsim.seed import group_fields, user_fields

if TYPE_CHECKING:
    from graphsim.simulator import GraphSimulator

Endpoint = Callable[[Request], Awaitable[Response]]


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = orjson.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


def _guarded(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except KeyError as exc:
            return error_response(404, "Request_ResourceNotFound", str(exc.args[0] if exc.args else exc))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            return error_response(400, "BadRequest", str(exc))

    return endpoint


def apply_faults(sim: GraphSimulator, body: dict[str, Any]) -> None:
    """Apply knobs: drop_rate, duplicate_rate, delay_seconds, reorder, seed, reset, throttle / fail
    ``{"count", "retry_after", "path_prefix", "status"}``, expire_delta_tokens, subscription_lifetime_cap_seconds,
    subscription_quota, handshake_timeout, delta_page_size."""
    known = {
        "reset", "seed", "drop_rate", "duplicate_rate", "delay_seconds", "reorder", "throttle", "fail",
        "expire_delta_tokens", "subscription_lifetime_cap_seconds", "subscription_quota", "handshake_timeout",
        "delta_page_size",
    }
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown knobs {sorted(unknown)} (known: {', '.join(sorted(known))})")
    faults = sim.faults
    if body.get("reset"):
        faults.reset()
    if "seed" in body:
        faults.seed(body["seed"])
    for rate in ("drop_rate", "duplicate_rate", "delay_seconds"):
        if rate in body:
            setattr(faults, rate, float(body[rate]))
    if "reorder" in body:
        faults.reorder = bool(body["reorder"])
    if "throttle" in body:
        spec = body["throttle"]
        sim.throttle(int(spec.get("count", 1)), spec.get("retry_after", 1), spec.get("path_prefix"))
    if "fail" in body:
        spec = body["fail"]
        sim.fail(int(spec.get("count", 1)), int(spec.get("status", 503)), spec.get("retry_after"), spec.get("path_prefix"))
    if body.get("expire_delta_tokens"):
        sim.expire_delta_tokens()
    if "subscription_lifetime_cap_seconds" in body:
        cap = body["subscription_lifetime_cap_seconds"]
        sim.subscription_lifetime_cap = None if cap is None else timedelta(seconds=float(cap))
    if "subscription_quota" in body:
        sim.subscription_quota = int(body["subscription_quota"])
    if "handshake_timeout" in body:
        sim.handshake_timeout = float(body["handshake_timeout"])
    if "delta_page_size" in body:
        sim.delta_page_size = int(body["delta_page_size"])


def _knobs(sim: GraphSimulator) -> dict[str, Any]:
    cap = sim.subscription_lifetime_cap
    return {
        **sim.faults.as_dict(),
        "subscription_lifetime_cap_seconds": None if cap is None else cap.total_seconds(),
        "subscription_quota": sim.subscription_quota,
        "handshake_timeout": sim.handshake_timeout,
        "delta_page_size": sim.delta_page_size,
    }


def control_routes(sim: GraphSimulator) -> list[Route]:
    """The ``/_sim`` routes of one simulator."""

    async def add_user(request: Request) -> Response:
        return json_response({"id": sim.add_user(**user_fields(await _body(request)))}, 201)

    async def update_user(request: Request) -> Response:
        user_id = request.path_params["id"]
        sim.update_user(user_id, **user_fields(await _body(request)))
        return json_response({"id": user_id})

    async def get_user(request: Request) -> Response:
        user = sim.get_user(request.path_params["id"])
        if user is None:
            raise KeyError(f"no readable user {request.path_params['id']}")
        return json_response(user)

    async def user_action(request: Request) -> Response:
        user_id, action = request.path_params["id"], request.path_params["action"]
        actions = {"softDelete": sim.soft_delete_user, "restore": sim.restore_user, "hardDelete": sim.hard_delete_user}
        if action not in actions:
            raise KeyError(f"unknown action {action}")
        actions[action](user_id)
        return json_response({"id": user_id})

    async def add_group(request: Request) -> Response:
        body = await _body(request)
        group_id = sim.add_group(**group_fields(body))
        for member in body.get("members", []):
            sim.add_member(group_id, member)
        return json_response({"id": group_id}, 201)

    async def update_group(request: Request) -> Response:
        sim.update_group(request.path_params["id"], **group_fields(await _body(request)))
        return json_response({"id": request.path_params["id"]})

    async def delete_group(request: Request) -> Response:
        sim.delete_group(request.path_params["id"])
        return Response(status_code=204)

    async def add_member(request: Request) -> Response:
        member = (await _body(request)).get("id")
        if not isinstance(member, str):
            raise ValueError("the body must be {\"id\": \"<user or group id>\"}")
        sim.add_member(request.path_params["id"], member)
        return Response(status_code=204)

    async def remove_member(request: Request) -> Response:
        sim.remove_member(request.path_params["id"], request.path_params["uid"])
        return Response(status_code=204)

    async def seed(request: Request) -> Response:
        sim.load_seed(await _body(request))
        return json_response({"users": len(sim.tenant.users), "groups": len(sim.tenant.groups)})

    async def faults(request: Request) -> Response:
        apply_faults(sim, await _body(request))
        return json_response(_knobs(sim))

    async def get_faults(request: Request) -> Response:
        return json_response(_knobs(sim))

    async def calls(request: Request) -> Response:
        return json_response(dict(sim.calls))

    async def reset_calls(request: Request) -> Response:
        sim.calls.clear()
        return Response(status_code=204)

    async def subscriptions(request: Request) -> Response:
        return json_response(sim.subscriptions)

    async def remove_subscription(request: Request) -> Response:
        notify = request.query_params.get("notify", "true").lower() not in ("0", "false", "no")
        sim.remove_subscription(request.path_params["id"], notify=notify)
        return Response(status_code=204)

    async def lifecycle(request: Request) -> Response:
        body = await _body(request)
        sending = sim.send_lifecycle(request.path_params["id"], str(body.get("event", "reauthorizationRequired")))
        try:
            delivered = await asyncio.wait_for(sending, float(body.get("timeout", 10)))
        except TimeoutError:
            delivered = False
        return json_response({"delivered": delivered})

    async def stats(request: Request) -> Response:
        return json_response(
            {
                **sim.delivery.stats,
                "pending": sim.delivery.pending,
                "users": len(sim.tenant.users),
                "groups": len(sim.tenant.groups),
                "subscriptions": len(sim.subscriptions),
                "changes": sim.tenant.seq,
            }
        )

    async def delivered(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "100"))
        items = sim.delivered[-limit:] if limit > 0 else []
        return json_response({"count": len(sim.delivered), "items": items})

    async def idle(request: Request) -> Response:
        try:
            await sim.wait_idle(float(request.query_params.get("timeout", "10")))
        except TimeoutError:
            return error_response(504, "Timeout", f"{sim.delivery.pending} notifications still pending")
        return json_response({"pending": 0})

    async def clock(request: Request) -> Response:
        advance = getattr(sim.clock, "advance", None)
        if advance is None:
            raise ValueError("this simulator's clock cannot be moved (run it with python -m graphsim)")
        advance(float((await _body(request)).get("advance_seconds", 0)))
        return json_response({"now": sim.clock()})

    table: list[tuple[str, Endpoint, str]] = [
        ("/users", add_user, "POST"),
        ("/users/{id}", update_user, "PATCH"),
        ("/users/{id}", get_user, "GET"),
        ("/users/{id}/{action}", user_action, "POST"),
        ("/groups", add_group, "POST"),
        ("/groups/{id}", update_group, "PATCH"),
        ("/groups/{id}", delete_group, "DELETE"),
        ("/groups/{id}/members", add_member, "POST"),
        ("/groups/{id}/members/{uid}", remove_member, "DELETE"),
        ("/seed", seed, "POST"),
        ("/faults", faults, "POST"),
        ("/faults", get_faults, "GET"),
        ("/calls", calls, "GET"),
        ("/calls", reset_calls, "DELETE"),
        ("/subscriptions", subscriptions, "GET"),
        ("/subscriptions/{id}", remove_subscription, "DELETE"),
        ("/subscriptions/{id}/lifecycle", lifecycle, "POST"),
        ("/stats", stats, "GET"),
        ("/delivered", delivered, "GET"),
        ("/idle", idle, "POST"),
        ("/clock", clock, "POST"),
    ]
    return [Route(path, _guarded(handler), methods=[method]) for path, handler, method in table]
