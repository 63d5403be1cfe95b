"""Planner + applier against the real scim2-server: each plan converges (planning again gives [])."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import pytest

from reactor.config import AskCodySettings, GroupMapping, Settings
from reactor.domain.model import EntraUser, UserFacts
from reactor.domain.operations import AddMember, CreateUser, DeleteUser, EnsureGroup, RemoveMember, SetActive, UpdateUser
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient, ScimError
from reactor.sync.apply import apply_operations, refused_attributes
from reactor.sync.planner import plan_user, user_attributes
from tests.scim.conftest import group_members
from tests.support.faultproxy import fault_proxy
from tests.support.scim_server import ScimServer

G1 = "aaaaaaaa-0000-0000-0000-000000000001"
G2 = "aaaaaaaa-0000-0000-0000-000000000002"


def config(deprovision: str = "disable") -> Settings:
    return Settings(
        askcody=AskCodySettings(deprovision=deprovision),  # type: ignore[arg-type]
        groups=(GroupMapping(G1, askcody_group="Facility Management"), GroupMapping(G2, askcody_group="Reception")),
    )


def person(n: int, *groups: str, **changes: object) -> UserFacts:
    uid = f"00000000-0000-0000-0000-{n:012d}"
    values: dict[str, object] = {
        "id": uid,
        "user_principal_name": f"user{n}@contoso.com",
        "display_name": f"User {n}",
        "given_name": "User",
        "surname": str(n),
        "mail": f"user{n}@contoso.com",
        "cost_center": "CC-1",
    }
    values.update(changes)
    return UserFacts(uid, EntraUser(**values), frozenset(groups))  # type: ignore[arg-type]


async def sync(client: AskCodyClient, facts: UserFacts, s: Settings, group_ids: dict[str, str]) -> list[type]:
    """What the engine does for one user: look up, plan, apply; returns the kinds of operations applied."""
    user = facts.user
    current = await client.find_user(facts.entra_id, user.user_principal_name if user else None, user.mail if user else None)
    ops = plan_user(facts, current, s, group_ids=group_ids)
    result = await apply_operations(client, ops, group_ids=group_ids)
    assert result.ok, result.failures
    group_ids.update(result.group_ids)
    return [type(op) for op in result.applied]


async def converged(client: AskCodyClient, facts: UserFacts, s: Settings, group_ids: Mapping[str, str]) -> bool:
    user = facts.user
    current = await client.find_user(facts.entra_id, user.user_principal_name if user else None, user.mail if user else None)
    return plan_user(facts, current, s, group_ids=group_ids) == []


async def test_a_user_through_its_life(client: AskCodyClient, server: ScimServer) -> None:
    s, ids = config(), {}
    joined = person(1, G1)
    assert await sync(client, joined, s, ids) == [EnsureGroup, CreateUser, AddMember]
    assert await converged(client, joined, s, ids)

    both = person(1, G1, G2, cost_center="CC-2", mail="u1.new@contoso.com")
    assert await sync(client, both, s, ids) == [EnsureGroup, UpdateUser, AddMember]
    assert await converged(client, both, s, ids)
    stored = await client.find_user(both.entra_id)
    assert stored is not None and (stored.cost_center, stored.email) == ("CC-2", "u1.new@contoso.com")
    assert stored.groups == frozenset(ids.values())

    disabled = person(1, G1, G2, cost_center="CC-2", mail="u1.new@contoso.com", account_enabled=False)
    assert await sync(client, disabled, s, ids) == [SetActive]
    assert await converged(client, disabled, s, ids)

    left = person(1, cost_center="CC-2", mail="u1.new@contoso.com")
    assert await sync(client, left, s, ids) == [RemoveMember, RemoveMember]  # already inactive
    assert await converged(client, left, s, ids)

    back = person(1, G2, cost_center="CC-2", mail="u1.new@contoso.com")
    assert await sync(client, back, s, ids) == [SetActive, AddMember]
    assert await converged(client, back, s, ids)
    assert len(server.resources("User")) == 1 and len(server.resources("Group")) == 2


async def test_deprovision_delete(client: AskCodyClient, server: ScimServer) -> None:
    s, ids = config("delete"), {}
    await sync(client, person(2, G1), s, ids)
    gone = UserFacts(person(2).entra_id, None)
    assert await sync(client, gone, s, ids) == [RemoveMember, DeleteUser]
    assert server.resources("User") == []
    assert await group_members(client, ids[G1]) == frozenset()
    assert await sync(client, person(2, G1), s, ids) == [CreateUser, AddMember]


async def test_a_hand_made_user_is_adopted_by_email(client: AskCodyClient, server: ScimServer) -> None:
    made_by_hand = EntraUser(id="hand-made", user_principal_name="someone.else", mail="user3@contoso.com")
    hand, _ = await client.create_user(user_attributes(made_by_hand), active=False)
    s, ids = config(), {}
    facts = person(3, G1)
    assert await sync(client, facts, s, ids) == [EnsureGroup, UpdateUser, SetActive, AddMember]
    adopted = await client.find_user(facts.entra_id)
    assert adopted is not None and adopted.id == hand.id and adopted.user_name == "user3@contoso.com"
    assert len(server.resources("User")) == 1
    assert await converged(client, facts, s, ids)


async def test_a_deleted_group_takes_its_members_along(client: AskCodyClient) -> None:
    s, ids = config(), {}
    stays, goes = person(4, G1, G2), person(5, G1)
    for f in (stays, goes):
        await sync(client, f, s, ids)
    members = [(f, await client.find_user(f.entra_id)) for f in (stays, goes)]
    ops = [op for f, c in members for op in plan_user(dataclasses.replace(f, groups=f.groups - {G1}), c, s, group_ids=ids)]
    result = await apply_operations(client, ops, group_ids=ids)
    assert result.ok
    assert [type(op) for op in result.applied] == [RemoveMember, RemoveMember, SetActive]
    assert await group_members(client, ids[G1]) == frozenset()
    kept = await client.find_user(stays.entra_id)
    dropped = await client.find_user(goes.entra_id)
    assert kept is not None and kept.active and kept.groups == frozenset({ids[G2]})
    assert dropped is not None and not dropped.active


async def test_a_full_sync_batches_memberships_per_group_and_isolates_failures(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    s: Settings = config()
    people = [person(n, G1, G2) for n in range(10, 16)]
    async with fault_proxy(server.url) as proxy:
        # A refusal that names userName: no optional attribute to leave out, the user fails alone.
        proxy.fail(400, when=lambda r: r.method == "POST" and b"user13@" in r.body, scim_type="invalidValue",
                   detail="userName: not acceptable")
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            ops = [op for f in people for op in plan_user(f, None, s)]
            result = await apply_operations(client, ops)
            assert set(result.failures) == {people[3].entra_id}
            assert isinstance(result.failures[people[3].entra_id], ScimError)
            assert {op.entra_user_id for op in result.skipped if isinstance(op, AddMember)} == {people[3].entra_id}
            assert proxy.count("PATCH", "/Groups/*") == 2  # one add per group for the five users created
            for group_id in result.group_ids.values():
                assert len(await group_members(client, group_id)) == 5
            for f in people[:3] + people[4:]:
                assert await converged(client, f, s, result.group_ids)


async def test_scim2_server_refuses_the_entra_member_removal(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    """Quirks worth knowing: scim2-server refuses Entra's default removal form, yet its lax pydantic
    validation accepts Entra's string ``"False"`` for ``active``."""
    async with AskCodyClient(settings_for(server.url, server.token, "entra"), TokenBucket(10_000)) as client:
        user, _ = await client.create_user(user_attributes(person(6).user))  # type: ignore[arg-type]
        await client.set_active(user.id, False)
        assert not (await client.get_user(user.id)).active
        group = await client.ensure_group(G1, "G")
        await client.add_members(group.id, ["u-1"])
        with pytest.raises(ScimError) as info:
            await client.remove_members(group.id, ["u-1"])
        assert info.value.status == 400 and info.value.scim_type == "invalidValue"


def _refusal(detail: str, status: int = 400) -> ScimError:
    return ScimError(f"POST /Users: {status}", status=status, scim_type="invalidValue", detail=detail)


@pytest.mark.parametrize(
    ("detail", "left_out"),
    [
        ('Attribute "emails" has an invalid value', ("email",)),
        ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter is too long", ("cost_center",)),
        ("name.givenName and displayName: unsupported characters", ("display_name", "given_name")),
        ("the request is invalid", ("display_name", "given_name", "family_name", "email", "cost_center")),
        ("", ("display_name", "given_name", "family_name", "email", "cost_center")),
        ("userName must be unique in the domain", ()),
    ],
)
def test_the_optional_attributes_a_400_refuses(detail: str, left_out: tuple[str, ...]) -> None:
    sent = ["display_name", "given_name", "family_name", "email", "cost_center"]
    assert refused_attributes(_refusal(detail), sent) == left_out


def test_only_a_400_leaves_attributes_out() -> None:
    assert refused_attributes(_refusal("emails", status=403), ["email"]) == ()
    assert refused_attributes(_refusal("emails"), []) == ()


async def test_a_refused_e_mail_leaves_the_user_provisioned_without_it(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    s: Settings = config()
    facts = person(20, G1, mail="anna.berg@corp.contoso.local")
    async with fault_proxy(server.url) as proxy:
        refusal = proxy.reject(when=lambda r: r.method == "POST" and r.path == "/Users" and b"emails" in r.body)
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            result = await apply_operations(client, plan_user(facts, None, s))
            assert result.ok, result.failures
            assert refusal.hits == 1 and proxy.count("POST", "/Users") == 2
            assert [(r.entra_id, r.attributes) for r in result.refused] == [
                (facts.entra_id, ("display_name", "given_name", "family_name", "email", "cost_center"))
            ]
            stored = await client.find_user(facts.entra_id)
            assert stored is not None and stored.active and stored.user_name == "user20@contoso.com"
            assert stored.email is None and stored.groups == frozenset(result.group_ids.values())

            # AskCody keeps refusing only the e-mail, and says so: the rest is written, the e-mail left out.
            proxy.fail(400, times=10, when=lambda r: r.method == "PATCH" and b"emails" in r.body,
                       scim_type="invalidValue", detail="emails: invalid domain")
            current = await client.find_user(facts.entra_id)
            ops = plan_user(facts, current, s, group_ids=result.group_ids)
            assert [type(op) for op in ops] == [UpdateUser]
            again = await apply_operations(client, ops, group_ids=result.group_ids)
            assert again.ok and [r.attributes for r in again.refused] == [("email",)]
            stored = await client.find_user(facts.entra_id)
            assert stored is not None and (stored.display_name, stored.cost_center, stored.email) == ("User 20", "CC-1", None)


async def test_a_400_on_the_retry_without_optional_attributes_is_a_failure(
    server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> None:
    facts = person(21, G1)
    async with fault_proxy(server.url) as proxy:
        refusal = proxy.reject(times=5, when=lambda r: r.method == "POST" and r.path == "/Users")
        async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000)) as client:
            result = await apply_operations(client, plan_user(facts, None, config()))
            assert set(result.failures) == {facts.entra_id} and result.refused == []
            assert refusal.hits == 2  # once with the optional attributes, once without: no more
    assert server.resources("User") == []
