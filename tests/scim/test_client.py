"""The AskCody client against the real scim2-server over HTTP (rfc dialect)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from reactor.config import AskCodySettings
from reactor.domain.model import UserAttributes
from reactor.errors import NotFoundError, TransientError
from reactor.metrics import REGISTRY
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient, ScimError
from reactor.scim.resources import CORE_USER, ENTERPRISE_USER
from reactor.sync.apply import adopt
from tests.scim.conftest import group_members
from tests.support.faultproxy import fault_proxy
from tests.support.scim_server import ScimServer
from tests.support.servers import free_port

UID = "11111111-1111-1111-1111-111111111111"
GID = "aaaaaaaa-0000-0000-0000-000000000001"


def alice(**changes: Any) -> UserAttributes:
    values: dict[str, Any] = {
        "user_name": "alice@contoso.com",
        "external_id": UID,
        "display_name": "Alice Jensen",
        "given_name": "Alice",
        "family_name": "Jensen",
        "email": "alice@contoso.com",
        "cost_center": "CC-100",
    }
    values.update(changes)
    return UserAttributes(**values)


async def by_hand(server: ScimServer, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a resource directly, as an administrator would in AskCody."""
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/scim+json"}
    async with aiohttp.ClientSession() as session, session.post(server.url + endpoint, json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json(content_type=None)
        return created


def users(server: ScimServer) -> list[Any]:
    return server.resources("User")


async def test_ping_asks_for_a_user_that_does_not_exist_and_changes_nothing(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with fault_proxy(server.url) as proxy:
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            await client.ping()
            await client.ping()
    assert [(r.method, r.path) for r in proxy.log] == [("GET", "/Users")] * 2
    assert all(r.query.startswith("filter=userName") for r in proxy.log)
    assert users(server) == []


async def test_ping_against_a_closed_port_fails_at_once_with_a_transient_error(
    settings_for: Callable[..., AskCodySettings]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/scim/v2"  # nothing listens there
    labels = {"method": "GET", "outcome": "connection_error"}
    before = REGISTRY.get_sample_value("reactor_scim_requests_total", labels) or 0.0
    async with AskCodyClient(settings_for(url, "closed-port-token")) as client:
        with pytest.raises(TransientError) as info:
            await client.ping()
    assert str(info.value).startswith("GET /Users: ")
    assert (REGISTRY.get_sample_value("reactor_scim_requests_total", labels) or 0.0) - before == 1  # not retried
    assert "closed-port-token" not in str(info.value)


async def test_ping_answered_401_fails_once_with_a_scim_error_naming_the_status(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with fault_proxy(server.url) as proxy:
        proxy.fail(401, detail="the token has expired")
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            with pytest.raises(ScimError) as info:
                await client.ping()
    assert info.value.status == 401
    assert "401" in str(info.value) and server.token not in str(info.value)
    assert proxy.count("GET", "/Users") == 1  # a readiness probe is not retried


async def test_ping_with_a_wrong_token_is_refused_without_leaking_it(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with AskCodyClient(settings_for(server.url, "not-the-token")) as client:
        with pytest.raises(ScimError) as info:
            await client.ping()
    assert info.value.status == 401
    assert "not-the-token" not in str(info.value)


async def test_create_then_look_up_by_external_id_user_name_and_email(client: AskCodyClient, server: ScimServer) -> None:
    created, _ = await client.create_user(alice())
    assert created.external_id == UID and created.active and created.cost_center == "CC-100"

    by_external_id = await client.find_user(UID)
    by_user_name = await client.find_user("unknown-id", "ALICE@contoso.com")
    by_email = await client.find_user("unknown-id", "nobody@contoso.com", "alice@contoso.com")
    assert by_external_id == by_user_name == by_email
    assert by_external_id is not None
    assert (by_external_id.id, by_external_id.email, by_external_id.given_name, by_external_id.family_name) == (
        created.id,
        "alice@contoso.com",
        "Alice",
        "Jensen",
    )
    assert await client.find_user("unknown-id", "nobody@contoso.com", "nobody@contoso.com") is None
    stored = users(server)[0].model_dump()
    assert ENTERPRISE_USER in stored["schemas"] and stored[ENTERPRISE_USER]["costCenter"] == "CC-100"


async def test_a_user_created_by_hand_is_adopted_not_duplicated(client: AskCodyClient, server: ScimServer) -> None:
    hand = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "alice@contoso.com", "active": False})

    found, created = await client.create_user(alice())  # 409 uniqueness → looked up, returned as it is
    assert (found.id, created) == (hand["id"], False)
    adopted = await adopt(client, found, alice(), active=True)

    assert adopted.id == hand["id"]
    assert len(users(server)) == 1
    assert (adopted.external_id, adopted.active, adopted.cost_center, adopted.email) == (UID, True, "CC-100", "alice@contoso.com")
    assert await client.find_user(UID) == adopted


async def test_a_user_created_by_hand_is_found_by_work_email(client: AskCodyClient, server: ScimServer) -> None:
    hand = await by_hand(
        server,
        "/Users",
        {"schemas": [CORE_USER], "userName": "ajensen", "emails": [{"type": "work", "value": "alice@contoso.com"}]},
    )
    found = await client.find_user(UID, "alice@contoso.com", "alice@contoso.com")
    assert found is not None and found.id == hand["id"] and found.external_id is None


async def test_email_lookup_falls_back_when_the_complex_filter_is_refused(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with fault_proxy(server.url) as proxy:
        proxy.reject(when=lambda r: "emails%5Btype" in r.query or "emails[type" in r.query, scim_type="invalidFilter")
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            await client.create_user(alice())
            found = await client.find_user("unknown", None, "alice@contoso.com")
            again = await client.find_user("unknown", None, "alice@contoso.com")
    assert found is not None and again == found
    assert proxy.faulted[("GET", "/Users")] == 1


async def test_patch_replaces_attributes_including_cost_center(client: AskCodyClient) -> None:
    user, _ = await client.create_user(alice())
    await client.update_user(
        user.id,
        {
            "cost_center": "CC-200",
            "given_name": "Alicia",
            "display_name": "Alicia Berg",
            "family_name": "Berg",
            "email": "alicia@contoso.com",
            "user_name": "alicia@contoso.com",
        },
    )
    after = await client.get_user(user.id)
    assert (after.cost_center, after.given_name, after.family_name, after.display_name, after.email, after.user_name) == (
        "CC-200",
        "Alicia",
        "Berg",
        "Alicia Berg",
        "alicia@contoso.com",
        "alicia@contoso.com",
    )
    await client.update_user(user.id, {"cost_center": None, "email": None, "display_name": None})
    cleared = await client.get_user(user.id)
    assert (cleared.cost_center, cleared.email, cleared.display_name) == (None, None, None)


async def test_active_false_then_true(client: AskCodyClient) -> None:
    user, _ = await client.create_user(alice())
    await client.set_active(user.id, False)
    assert not (await client.get_user(user.id)).active
    await client.set_active(user.id, True)
    assert (await client.get_user(user.id)).active


async def test_group_find_or_create(client: AskCodyClient, server: ScimServer) -> None:
    created = await client.ensure_group(GID, "Facility Management")
    again = await client.ensure_group(GID, "Renamed meanwhile")
    assert created.id == again.id and created.external_id == GID
    assert len(server.resources("Group")) == 1

    other = "aaaaaaaa-0000-0000-0000-000000000002"
    hand = await by_hand(
        server, "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Reception"}
    )
    adopted = await client.ensure_group(other, "reception")
    assert adopted.id == hand["id"] and adopted.external_id == other
    assert (await client.find_group(other)) == adopted


async def test_members_are_added_in_one_patch_and_removed(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    async with fault_proxy(server.url) as proxy:
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            group = await client.ensure_group(GID, "Facility Management")
            ids = []
            for n in range(3):
                user, _ = await client.create_user(alice(user_name=f"u{n}@contoso.com", external_id=f"e{n}", email=None))
                ids.append(user.id)
            before = proxy.count("PATCH")
            await client.add_members(group.id, ids)
            assert proxy.count("PATCH") == before + 1
            assert await group_members(client, group.id) == frozenset(ids)
            assert await client.user_groups(ids[0]) == frozenset({group.id})
            assert (await client.get_user(ids[1])).groups == frozenset({group.id})

            await client.add_members(group.id, ids[:1])  # adding a member again changes nothing
            await client.remove_members(group.id, ids[:2])
            assert await group_members(client, group.id) == frozenset(ids[2:])
            await client.remove_members(group.id, ids[:1])  # removing one that is not there is fine
            assert await group_members(client, group.id) == frozenset(ids[2:])


async def test_member_batches_are_split(client: AskCodyClient) -> None:
    group = await client.ensure_group(GID, "G")
    await client.add_members(group.id, [f"id-{n}" for n in range(7)], batch=3)
    assert len(await group_members(client, group.id)) == 7
    await client.remove_members(group.id, [f"id-{n}" for n in range(6)], batch=4)
    assert await group_members(client, group.id) == frozenset({"id-6"})


async def test_not_found_and_delete(client: AskCodyClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get_user("does-not-exist")
    user, _ = await client.create_user(alice())
    assert await client.delete_user(user.id) is True
    assert await client.delete_user(user.id) is False
    assert await client.find_user(UID) is None


async def test_searches_follow_every_page(client: AskCodyClient) -> None:
    for n in range(5):
        await client.create_user(alice(user_name=f"u{n}@contoso.com", external_id=f"e{n}", email=None))
    listed = [u async for u in client._search("/Users", page_size=2)]
    assert sorted(u["userName"] for u in listed) == [f"u{n}@contoso.com" for n in range(5)]


async def test_requests_are_counted(client: AskCodyClient) -> None:
    def ok(method: str) -> float:
        return REGISTRY.get_sample_value("reactor_scim_requests_total", {"method": method, "outcome": "ok"}) or 0.0

    def missing() -> float:
        labels = {"method": "GET", "outcome": "not_found"}
        return REGISTRY.get_sample_value("reactor_scim_requests_total", labels) or 0.0

    posts, gets, not_found = ok("POST"), ok("GET"), missing()
    await client.create_user(alice())
    await client.find_user(UID, with_groups=False)
    with pytest.raises(NotFoundError):
        await client.get_user("nope")
    assert (ok("POST") - posts, ok("GET") - gets, missing() - not_found) == (1, 1, 1)


@pytest.mark.parametrize("scim_id", ["..", ".", "a/b", "x?filter=y", "a#b", "with space", "../Groups"])
async def test_a_scim_id_is_one_path_segment_however_it_reads(client: AskCodyClient, server: ScimServer, scim_id: str) -> None:
    _, _ = await client.create_user(alice())
    with pytest.raises(NotFoundError):
        await client.get_user(scim_id)  # never the user list, a group, or another user
    with pytest.raises(NotFoundError):
        await client.update_user(scim_id, {"display_name": "Mallory"})
    assert [u.model_dump().get("displayName") for u in users(server)] == ["Alice Jensen"]


@pytest.mark.parametrize(
    "name",
    [
        "o'brien.\"ceo\"@contoso.com",
        "CONTOSO\\svc-askcody",
        'ends with a backslash \\',
        "Facility\nmanagers",
        "Jørgen\tHansen (ext)",
        "山田 太郎",
        "Σταυρούλα Παπαδοπούλου",
        "محمد الأحمد",
        "\"Rooms\" \\ Ärzte\r\n\x01\x1f",
    ],
)
async def test_filter_values_with_quotes_backslashes_controls_and_any_script_find_their_resource(
    client: AskCodyClient, server: ScimServer, name: str
) -> None:
    """A filter literal is a JSON string (RFC 7644 §3.4.2.2): quotes, backslashes and control
    characters escaped, other characters as they are; an unescaped newline is a refused filter."""
    await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "someone.else@contoso.com"})
    user = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": name})
    group = await by_hand(server, "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name})

    found = await client.find_user(UID, name, with_groups=False)
    assert found is not None and found.id == user["id"]
    found_group = await client.find_group(GID, name)
    assert found_group is not None and found_group.id == group["id"]
    assert await client.find_user(UID, name + "x", with_groups=False) is None


async def test_a_lookup_is_one_request_and_keeps_the_precedence_of_the_keys(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    # Three people AskCody holds, each matching the Entra user by one key only.
    by_mail = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "o'brien.mail@contoso.com",
                                               "emails": [{"type": "work", "value": "Siobhan.OBrien@contoso.com"}]})
    by_name = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "siobhan.obrien@contoso.com"})
    async with fault_proxy(server.url) as proxy:
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            found = await client.find_user(UID, "Siobhan.OBrien@contoso.com", "siobhan.obrien@contoso.com", with_groups=False)
            assert found is not None and found.id == by_name["id"]  # userName before e-mail
            assert proxy.count("GET", "/Users") == 1
            owned = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "s.obrien@fabrikam.com",
                                                     "externalId": UID})
            found = await client.find_user(UID, "siobhan.obrien@contoso.com", "siobhan.obrien@contoso.com", with_groups=False)
            assert found is not None and found.id == owned["id"]  # externalId first
            found = await client.find_user("22222222-2222-2222-2222-222222222222", None, "siobhan.obrien@contoso.com",
                                           with_groups=False)
            assert found is not None and found.id == by_mail["id"]
            assert proxy.count("GET", "/Users") == 3


async def test_a_server_that_refuses_or_is_asked_one_key_at_a_time_from_then_on(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    made = await by_hand(server, "/Users", {"schemas": [CORE_USER], "userName": "zoë.ngata@contoso.com"})
    async with fault_proxy(server.url) as proxy:
        proxy.fail(400, times=10**6, when=lambda r: "+or+" in r.query or "%20or%20" in r.query, detail="or is not supported")
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            found = await client.find_user(UID, "zoë.ngata@contoso.com", None, with_groups=False)
            assert found is not None and found.id == made["id"]
            assert sum(proxy.faulted.values()) == 1
            assert await client.find_user(UID, "nobody@contoso.com", None, with_groups=False) is None
            assert sum(proxy.faulted.values()) == 1  # not asked with "or" again
