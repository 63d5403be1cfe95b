"""Writes that overlap go to the real scim2-server as ``POST /Bulk`` (it advertises bulk): fewer
requests, each caller with its own outcome; a server without bulk, or one that refuses it, gets plain
requests; ``askcody.bulk = false`` never asks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from reactor import retry
from reactor.config import AskCodySettings
from reactor.domain.model import UserAttributes
from reactor.errors import NotFoundError
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient
from tests.scim.conftest import group_members
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.scim_server import ScimServer, scim_server

POLICY = retry.RetryPolicy(attempts=5, horizon=60.0)
NAMES = ["zoë.ødegård", "kenji.tanaka", "siobhán.o'brien", "amira.haddad", "jörg.müller", "lars.nørgaard",
         "ana.løvstad", "dmitri.ivanov"]


def attrs(i: int, name: str) -> UserAttributes:
    mail = f"{name.replace(chr(39), '')}@contoso.photography"
    given, family = (part.title() for part in name.split("."))
    return UserAttributes(mail, f"e-{i}", name.title(), given, family, mail, f"CC-{i % 3}")


@pytest.fixture
async def proxy(server: ScimServer) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(server.url) as running:
        yield running


def client_for(
    url: str, server: ScimServer, settings_for: Callable[..., AskCodySettings], rate: float = 20, **kw: object
) -> AskCodyClient:
    # A low rate makes the writes wait for tokens together, as a bulk sync does against AskCody's limit.
    return AskCodyClient(settings_for(url, server.token, **kw), TokenBucket(rate, burst=1), retry_policy=POLICY)


def bulk_requests(proxy: FaultProxy) -> list[ProxiedRequest]:
    return [r for r in proxy.log if r.method == "POST" and r.path == "/Bulk"]


async def test_overlapping_creates_share_bulk_requests_and_each_gets_its_user(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with client_for(proxy.url, server, settings_for) as client:
        results = await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES)))
    held = {u.external_id: u.id for u in server.resources("User")}
    assert len(held) == len(NAMES)
    # Each caller got the id AskCody gave its own user, and its own attributes.
    assert {user.external_id: user.id for user, created in results if created} == held
    assert [user.user_name for user, _ in results] == [attrs(i, n).user_name for i, n in enumerate(NAMES)]
    bulks = bulk_requests(proxy)
    assert bulks, "no bulk request was sent"
    sent = proxy.count("POST", "/Users") + sum(len(r.json()["Operations"]) for r in bulks)
    assert sent == len(NAMES)  # every create sent once, alone or in a bulk
    assert proxy.count() < len(NAMES)  # fewer requests than creates (the config read included)


async def test_one_refused_operation_fails_only_its_caller(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with client_for(proxy.url, server, settings_for) as client:
        existing, _ = await client.create_user(attrs(0, NAMES[0]))
        outcomes = await asyncio.gather(
            client.create_user(attrs(0, NAMES[0])),  # 409 in the bulk: found and returned as not created
            client.set_active("no-such-user", False),  # 404 in the bulk: this caller's NotFoundError
            *(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES[1:4], start=1)),
            return_exceptions=True,
        )
    assert bulk_requests(proxy), "no bulk request was sent"
    again, gone, *created = outcomes
    assert again == (existing, False) or (isinstance(again, tuple) and again[0].id == existing.id and again[1] is False)
    assert isinstance(gone, NotFoundError)
    assert all(isinstance(c, tuple) and c[1] for c in created), created
    assert len(server.resources("User")) == 4


async def test_member_patches_of_many_groups_in_one_bulk(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with client_for(proxy.url, server, settings_for) as client:
        users = [u for u, _ in await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES[:4])))]
        groups = await asyncio.gather(*(client.ensure_group(f"g-{i}", name) for i, name in
                                        enumerate(["Reception CPH", "Facility Management", "Kantine Aarhus (Åbyhøj)"])))
        await asyncio.gather(*(client.add_members(g.id, [u.id for u in users]) for g in groups))
        await asyncio.gather(*(client.remove_members(g.id, [users[0].id]) for g in groups))
        for g in groups:
            assert await group_members(client, g.id) == {u.id for u in users[1:]}
    patches_in_bulk = [op for r in bulk_requests(proxy) for op in r.json()["Operations"] if op["method"] == "PATCH"]
    assert patches_in_bulk, "no group PATCH went in a bulk request"


async def test_a_lost_answer_to_a_bulk_request_duplicates_nothing(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    # The first bulk request is applied by scim2-server but its answer is lost: every caller runs again,
    # the creates meet 409 and find their users.
    lost = proxy.lose_answer(when=lambda r: r.method == "POST" and r.path == "/Bulk")
    async with client_for(proxy.url, server, settings_for) as client:
        results = await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES)))
    assert lost.exhausted
    held = {u.external_id: u.id for u in server.resources("User")}
    assert len(held) == len(NAMES) == len(server.resources("User"))
    assert {user.external_id: user.id for user, _ in results} == held


async def test_a_refused_bulk_request_falls_back_to_one_request_a_write(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    proxy.fail(413, when=lambda r: r.path == "/Bulk", scim_type="tooLarge")
    async with client_for(proxy.url, server, settings_for) as client:
        await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES[:4])))
        await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES[4:], start=4)))
    assert len(server.resources("User")) == len(NAMES)
    assert len(bulk_requests(proxy)) == 1  # refused once, never tried again by this client
    assert proxy.count("POST", "/Users") == len(NAMES)


@pytest.mark.parametrize("why", ["server without bulk", "askcody.bulk = false"])
async def test_no_bulk_when_not_offered_or_turned_off(settings_for: Callable[..., AskCodySettings], why: str) -> None:
    async with scim_server(bulk=why != "server without bulk") as server, fault_proxy(server.url) as proxy:
        async with client_for(proxy.url, server, settings_for, bulk=why == "server without bulk") as client:
            await asyncio.gather(*(client.create_user(attrs(i, n)) for i, n in enumerate(NAMES)))
        assert len(server.resources("User")) == len(NAMES)
        assert proxy.count("POST", "/Users") == len(NAMES)
        assert not bulk_requests(proxy)
        asked = proxy.count("GET", "/ServiceProviderConfig")
        assert asked == (1 if why == "server without bulk" else 0)


async def test_a_lone_write_is_a_plain_request(
    server: ScimServer, proxy: FaultProxy, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with client_for(proxy.url, server, settings_for) as client:
        for i, n in enumerate(NAMES[:3]):
            await client.create_user(attrs(i, n))
    assert proxy.count("POST", "/Users") == 3
    assert proxy.count() == 3  # not even the ServiceProviderConfig: nothing overlapped
