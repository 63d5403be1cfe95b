"""ETags against the real scim2-server: a write answers the user's new version (from the body, the
``ETag`` of a 204, or a bulk result's ``version``); a write given a version carries it as ``If-Match``
(in a bulk request: the operation's ``version``) and is refused with 412 when AskCody holds another;
a server whose ServiceProviderConfig does not advertise ``etag``, or ``askcody.etags = false``, gets
no ``If-Match``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from reactor import retry
from reactor.config import AskCodySettings
from reactor.domain.model import UserAttributes
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient, ScimError
from reactor.sync.engine import STALE_STATUSES
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import ScimServer, scim_server

POLICY = retry.RetryPolicy(attempts=5, horizon=60.0)


def person(i: int, name: str) -> UserAttributes:
    mail = f"{name.replace(chr(39), '')}@contoso.com"
    given, family = (part.title() for part in name.split("."))
    return UserAttributes(mail, f"e-{i}", f"{given} {family}", given, family, mail, "CC-100")


def stored(server: ScimServer, scim_id: str) -> Any:
    return next(u for u in server.resources("User") if u.id == scim_id)


def if_matches(proxy: FaultProxy) -> list[str | None]:
    """The ``If-Match`` of each user PATCH the proxy saw, in order (None: sent without)."""
    return [r.header("If-Match") for r in proxy.log if r.method == "PATCH" and r.path.startswith("/Users/")]


def bulk_requests(proxy: FaultProxy) -> list[ProxiedRequest]:
    return [r for r in proxy.log if r.method == "POST" and r.path == "/Bulk"]


@pytest.fixture
async def proxy(server: ScimServer) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(server.url) as running:
        yield running


async def test_each_write_answers_the_users_new_version_and_the_next_write_may_expect_it(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
        user, _ = await client.create_user(person(0, "zoë.ødegård"))
        assert user.version is not None and user.version == stored(server, user.id).meta.version
        after_update = await client.update_user(user.id, {"cost_center": "CC-4711"}, version=user.version)
        assert after_update is not None and after_update != user.version  # from the 204's ETag
        after_active = await client.set_active(user.id, False, version=after_update)
        assert after_active == stored(server, user.id).meta.version
        held = await client.get_user(user.id)
    assert held.version == after_active and held.cost_center == "CC-4711" and not held.active
    assert if_matches(proxy) == [user.version, after_update]
    assert proxy.count("GET", "/ServiceProviderConfig") == 1  # asked once, at the first write given a version


async def test_a_write_expecting_a_version_askcody_no_longer_holds_is_refused_412_and_changes_nothing(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
        user, _ = await client.create_user(person(0, "siobhán.o'brien"))
        await server.by_hand(user.id, displayName="Changed by hand")
        with pytest.raises(ScimError) as refused:
            await client.update_user(user.id, {"cost_center": "CC-4711"}, version=user.version)
        assert refused.value.status == 412 and refused.value.status in STALE_STATUSES
        held = await client.get_user(user.id)
    assert held.cost_center == "CC-100" and held.display_name == "Changed by hand"
    assert proxy.count("PATCH", f"/Users/{user.id}") == 1  # a 412 is not retried: the caller re-plans


async def test_in_a_bulk_request_each_write_carries_its_version_and_only_the_stale_one_fails_412(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    names = ["kenji.tanaka", "amira.haddad", "jörg.müller", "lars.nørgaard"]
    # A low rate makes the writes wait for tokens together, as a bulk sync does against AskCody's limit.
    settings = settings_for(proxy.url, server.token)
    async with AskCodyClient(settings, TokenBucket(20, burst=1), retry_policy=POLICY) as client:
        users = [u for u, _ in await asyncio.gather(*(client.create_user(person(i, n)) for i, n in enumerate(names)))]
        await server.by_hand(users[0].id, active=False)
        outcomes = await asyncio.gather(
            *(client.update_user(u.id, {"cost_center": "CC-4711"}, version=u.version) for u in users),
            return_exceptions=True,
        )
    operations = [op for r in bulk_requests(proxy) for op in r.json()["Operations"] if op["method"] == "PATCH"]
    assert f"/Users/{users[0].id}" in [op["path"] for op in operations], "the stale PATCH did not go in a bulk request"
    versions = {f"/Users/{u.id}": u.version for u in users}
    assert all(op.get("version") == versions[op["path"]] for op in operations), operations
    stale, *fine = outcomes
    assert isinstance(stale, ScimError) and stale.status == 412, stale
    for user, version in zip(users[1:], fine, strict=True):
        assert isinstance(version, str) and version == stored(server, user.id).meta.version
        assert version != user.version
    assert stored(server, users[0].id).active is False  # refused: nothing of it applied


@pytest.mark.parametrize("why", ["server without etags", "askcody.etags = false"])
async def test_no_if_match_when_etags_are_not_advertised_or_turned_off(
    settings_for: Callable[..., AskCodySettings], why: str
) -> None:
    async with scim_server(etag=why != "server without etags") as server, fault_proxy(server.url) as proxy:
        settings = settings_for(proxy.url, server.token, etags=why == "server without etags")
        async with AskCodyClient(settings, TokenBucket(10_000)) as client:
            user, _ = await client.create_user(person(0, "dmitri.ivanov"))
            if why == "server without etags":
                assert user.version is None  # scim2-server leaves meta.version out
            # A version kept from before (or made up): not sent, so the write is not refused.
            await client.update_user(user.id, {"cost_center": "CC-4711"}, version='W/"1"')
            await client.set_active(user.id, False, version='W/"1"')
        assert stored(server, user.id).active is False
        assert if_matches(proxy) == [None, None]
        asked = proxy.count("GET", "/ServiceProviderConfig")
        assert asked == (1 if why == "server without etags" else 0)
