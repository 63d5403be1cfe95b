"""GraphReader against the Graph simulator over real HTTP: reads, paging, users and groups delta."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from graphsim import GraphSimulator
from reactor.domain.model import EntraGroup, EntraUser
from reactor.errors import PermanentError, TransientError
from reactor.graph.client import GraphClient
from reactor.graph.reader import GraphReader, GroupChange
from reactor.store.sqlite import SQLiteStore
from tests.support.retries import recording

APP_EXT = "extension_0123456789abcdef0123456789abcdef_costCenter"
Reader = Callable[..., GraphReader]


@pytest.mark.parametrize(
    ("source", "fields", "select"),
    [
        ("employeeOrgData/costCenter", {"employee_org_data": {"costCenter": "CC-1", "division": "D"}}, "employeeOrgData"),
        (
            "onPremisesExtensionAttributes/extensionAttribute7",
            {"extension_attributes": {7: "CC-1", 2: "other"}},
            "onPremisesExtensionAttributes",
        ),
        (APP_EXT, {"extensions": {APP_EXT: "CC-1"}}, APP_EXT),
    ],
)
async def test_get_user_selects_exactly_what_the_mapping_needs(
    sim: GraphSimulator, client: GraphClient, sent: list[tuple[str, str]], reader_for: Reader, source: str,
    fields: dict[str, Any], select: str,
) -> None:
    uid = sim.add_user(
        user_principal_name="ada@example.com",
        display_name="Ada Lovelace",
        given_name="Ada",
        surname="Lovelace",
        mail="ada@example.com",
        account_enabled=False,
        **fields,
    )
    sent.clear()
    user = await reader_for(cost_center=source).get_user(uid)
    assert user == EntraUser(
        id=uid,
        user_principal_name="ada@example.com",
        display_name="Ada Lovelace",
        given_name="Ada",
        surname="Lovelace",
        mail="ada@example.com",
        account_enabled=False,
        cost_center="CC-1",
    )
    expected = f"id,userPrincipalName,displayName,givenName,surname,mail,accountEnabled,{select}"
    assert sent == [("GET", f"{client.base_url}/users/{uid}?$select={expected}")]


async def test_get_user_without_cost_center_value(sim: GraphSimulator, reader_for: Reader) -> None:
    uid = sim.add_user(user_principal_name="bo@example.com")
    user = await reader_for(cost_center="onPremisesExtensionAttributes/extensionAttribute1").get_user(uid)
    assert user is not None and user.cost_center is None


async def test_get_user_404_soft_deleted_or_gone_reads_as_none(sim: GraphSimulator, reader_for: Reader) -> None:
    reader = reader_for()
    soft = sim.add_user(user_principal_name="soft@example.com")
    gone = sim.add_user(user_principal_name="gone@example.com")
    sim.soft_delete_user(soft)
    sim.hard_delete_user(gone)
    assert await reader.get_user(soft) is None
    assert await reader.get_user(gone) is None


async def test_get_group(sim: GraphSimulator, reader_for: Reader) -> None:
    gid = sim.add_group(display_name="Facility")
    reader = reader_for()
    assert await reader.get_group(gid) == EntraGroup(id=gid, display_name="Facility")
    sim.delete_group(gid)
    assert await reader.get_group(gid) is None


@pytest.mark.parametrize("bad", [".", "..", "", "a/b", "../v1.0", "%2e%2e", "users?$top=999", "x" * 5000])
async def test_an_id_that_is_not_a_guid_is_refused_before_any_request(
    sim: GraphSimulator, sent: list[tuple[str, str]], reader_for: Reader, bad: str
) -> None:
    """Put into a path, ``.`` or ``..`` would make the reader ask ``GET /users`` or ``GET /v1.0``."""
    uid = sim.add_user(user_principal_name="o'brien@contoso.com", display_name="Siobhán O'Brien")
    gid = sim.add_group(display_name="Ärzte & Pflege")
    sim.add_member(gid, uid)
    reader = reader_for(groups=(gid,))
    sent.clear()
    reads = [
        lambda: reader.get_user(bad),
        lambda: reader.get_group(bad),
        lambda: reader.group_member_ids(bad),
    ]
    for read in reads:
        with pytest.raises(PermanentError, match="is not a GUID") as caught:
            await read()
        assert len(str(caught.value)) < 120, "the refused id is quoted whole"
    assert sent == [], "a request reached Graph for an id that is not a GUID"
    # A real GUID (in either case) still reads.
    user = await reader.get_user(uid.upper())
    assert user is not None and user.display_name == "Siobhán O'Brien"
    assert await reader.group_member_ids(gid) == {uid}
    assert len(sent) == 2


async def test_group_member_ids_follows_pages(sim: GraphSimulator, reader_for: Reader) -> None:
    gid = sim.add_group(display_name="Big")
    members = {sim.add_user(user_principal_name=f"u{i}@example.com") for i in range(23)}
    for uid in members:
        sim.add_member(gid, uid)
    assert await reader_for(page_size=5).group_member_ids(gid) == members
    assert sim.calls["list_members"] == 5


async def test_users_delta_full_then_incremental_with_removals(
    sim: GraphSimulator, reader_for: Reader, store: SQLiteStore
) -> None:
    sim.delta_page_size = 2
    ids = [sim.add_user(user_principal_name=f"u{i}@example.com", employee_org_data={"costCenter": f"C{i}"}) for i in range(5)]
    reader = reader_for()
    first = await reader.users_delta()
    assert first.full
    assert {u.id for u in first.users} == set(ids)
    assert {u.cost_center for u in first.users} == {f"C{i}" for i in range(5)}
    assert await store.get_meta(reader.users_delta_key)

    sim.update_user(ids[0], display_name="Renamed")
    sim.soft_delete_user(ids[1])
    sim.hard_delete_user(ids[2])
    second = await reader.users_delta()
    assert not second.full
    by_id = {u.id: u for u in second.users}
    assert set(by_id) == {ids[0], ids[1], ids[2]}
    assert by_id[ids[0]].display_name == "Renamed" and by_id[ids[0]].state == "present"
    assert by_id[ids[1]] == EntraUser(id=ids[1], state="soft_deleted")
    assert by_id[ids[2]] == EntraUser(id=ids[2], state="hard_deleted")

    sim.restore_user(ids[1])
    third = await reader.users_delta()
    assert [(u.id, u.state) for u in third.users] == [(ids[1], "present")]
    assert (await reader.users_delta()).users == []


async def test_delta_link_is_stored_only_after_the_last_page(
    sim: GraphSimulator, client: GraphClient, reader_for: Reader, store: SQLiteStore
) -> None:
    sim.delta_page_size = 2
    for i in range(5):
        sim.add_user(user_principal_name=f"u{i}@example.com")
    reader = reader_for()
    pages = 0
    original = client.get_json

    async def failing_third_page(*args: object, **kwargs: object) -> dict[str, object]:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise TransientError("boom")
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    client.get_json = failing_third_page  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        await reader.users_delta()
    assert await store.get_meta(reader.users_delta_key) is None
    client.get_json = original  # type: ignore[method-assign]
    result = await reader.users_delta()
    assert result.full and len(result.users) == 5
    assert await store.get_meta(reader.users_delta_key)


async def test_expired_delta_token_starts_a_full_resync(sim: GraphSimulator, reader_for: Reader, store: SQLiteStore) -> None:
    ids = {sim.add_user(user_principal_name=f"u{i}@example.com") for i in range(3)}
    reader = reader_for()
    await reader.users_delta()
    old_link = await store.get_meta(reader.users_delta_key)
    sim.expire_delta_tokens()
    result = await reader.users_delta()
    assert result.full
    assert {u.id for u in result.users} == ids
    new_link = await store.get_meta(reader.users_delta_key)
    assert new_link and new_link != old_link
    assert not (await reader.users_delta()).full


async def test_delta_honours_throttling(sim: GraphSimulator, reader_for: Reader) -> None:
    sim.add_user(user_principal_name="a@example.com")
    sim.throttle(1, retry_after=2, path_prefix="/v1.0/users/delta")
    with recording() as history:
        result = await reader_for().users_delta()
    assert len(result.users) == 1
    assert [a.wait for a in history] == [2.0]


async def test_groups_delta_members_and_removals(sim: GraphSimulator, reader_for: Reader) -> None:
    g1 = sim.add_group(display_name="One")
    g2 = sim.add_group(display_name="Two")
    outside = sim.add_group(display_name="Out of scope")
    a, b, c = (sim.add_user(user_principal_name=f"{n}@example.com") for n in "abc")
    sim.add_member(g1, a)
    sim.add_member(g1, b)
    sim.add_member(g2, c)
    sim.add_member(outside, a)
    reader = reader_for(groups=(g1, g2))

    first = await reader.groups_delta()
    assert first.full
    assert first.groups == {
        g1: GroupChange("One", False, frozenset({a, b}), frozenset()),
        g2: GroupChange("Two", False, frozenset({c}), frozenset()),
    }

    sim.remove_member(g1, b)
    sim.add_member(g1, c)
    sim.update_group(g2, display_name="Two renamed")
    sim.add_member(outside, b)
    second = await reader.groups_delta()
    assert not second.full
    assert second.groups[g1].added_member_ids == {c}
    assert second.groups[g1].removed_member_ids == {b}
    assert second.groups[g2].display_name == "Two renamed"
    assert outside not in second.groups

    sim.delete_group(g2)
    third = await reader.groups_delta()
    assert third.groups[g2].deleted


async def test_groups_delta_merges_a_group_spread_over_pages(sim: GraphSimulator, reader_for: Reader) -> None:
    sim.delta_page_size = 3
    gid = sim.add_group(display_name="Large")
    members = {sim.add_user(user_principal_name=f"m{i}@example.com") for i in range(10)}
    for uid in members:
        sim.add_member(gid, uid)
    result = await reader_for(groups=(gid,)).groups_delta()
    assert result.groups[gid].added_member_ids == members
    assert sim.calls["groups_delta"] >= 4


async def test_groups_delta_chunks_more_than_50_groups(sim: GraphSimulator, reader_for: Reader, store: SQLiteStore) -> None:
    groups = [sim.add_group(display_name=f"G{i}") for i in range(120)]
    uid = sim.add_user(user_principal_name="x@example.com")
    for gid in groups[::10]:
        sim.add_member(gid, uid)
    reader = reader_for(groups=tuple(groups))
    result = await reader.groups_delta()
    assert result.full
    assert set(result.groups) == set(groups)
    assert sim.calls["groups_delta"] == 3
    chunks = [tuple(sorted(groups)[i : i + 50]) for i in (0, 50, 100)]
    for chunk in chunks:
        assert await store.get_meta(reader.groups_delta_key(chunk))

    sim.add_member(groups[1], uid)
    second = await reader.groups_delta()
    assert not second.full
    assert second.groups == {groups[1]: GroupChange("G1", False, frozenset({uid}), frozenset())}


async def test_groups_delta_expired_token_resyncs_fully(sim: GraphSimulator, reader_for: Reader) -> None:
    gid = sim.add_group(display_name="G")
    uid = sim.add_user(user_principal_name="x@example.com")
    sim.add_member(gid, uid)
    reader = reader_for(groups=(gid,))
    await reader.groups_delta()
    sim.expire_delta_tokens()
    result = await reader.groups_delta()
    assert result.full
    assert result.groups[gid].added_member_ids == {uid}


async def test_groups_delta_full_is_all_or_nothing(sim: GraphSimulator, reader_for: Reader, store: SQLiteStore) -> None:
    groups = sorted(sim.add_group(display_name=f"G{i}") for i in range(60))
    a, b = sim.add_user(user_principal_name="a@example.com"), sim.add_user(user_principal_name="b@example.com")
    sim.add_member(groups[0], a)
    sim.add_member(groups[55], b)
    reader = reader_for(groups=tuple(groups))
    await reader.groups_delta()
    # the second chunk lost its link (say the configuration grew): the first must not stay incremental
    await store.set_meta(reader.groups_delta_key(groups[50:]), None)
    sim.add_member(groups[1], b)
    result = await reader.groups_delta()
    assert result.full
    assert set(result.groups) == set(groups)
    assert result.groups[groups[0]].added_member_ids == {a}
    assert result.groups[groups[1]].added_member_ids == {b}
    assert result.groups[groups[55]].added_member_ids == {b}
    assert not (await reader.groups_delta()).full


async def test_nested_groups_in_members_and_in_groups_delta(sim: GraphSimulator, reader_for: Reader) -> None:
    top = sim.add_group(display_name="Reception")
    cph = sim.add_group(display_name="Reception-CPH")
    night = sim.add_group(display_name="Reception-CPH-Night")
    ane, bo = (sim.add_user(user_principal_name=f"{n}@contoso.dk") for n in ("ane", "bo"))
    sim.add_member(top, ane)
    sim.add_member(top, cph)
    sim.add_member(cph, bo)
    reader = reader_for(groups=(top,), page_size=1)
    members = await reader.group_members(top)
    assert (members.user_ids, members.group_ids) == (frozenset({ane}), frozenset({cph}))
    assert await reader.group_member_ids(top) == {ane}

    first = await reader.groups_delta([top, cph])
    assert first.groups[top].added_group_ids == {cph}
    assert first.groups[top].added_member_ids == {ane}
    sim.add_member(cph, night)
    sim.remove_member(top, cph)
    second = await reader.groups_delta([top, cph])
    assert second.groups[cph].added_group_ids == {night}
    assert second.groups[top].removed_group_ids == {cph}
    assert second.groups[top].removed_member_ids == frozenset()


async def test_users_delta_ids_keeps_only_the_ids_asked_for_page_by_page(
    sim: GraphSimulator, reader_for: Reader, store: SQLiteStore
) -> None:
    sim.delta_page_size = 3
    ids = [sim.add_user(user_principal_name=f"o'brien{i}@kontor.contoso.co.uk") for i in range(8)]
    known = set(ids[::2])
    reader = reader_for()
    first = await reader.users_delta_ids(known.__contains__, commit=False)
    assert first.full and first.ids == known
    assert await store.get_meta(reader.users_delta_key) is None, "not kept before commit"
    await reader.commit(first)
    sim.update_user(ids[0], display_name="Siobhán O'Brien")
    sim.update_user(ids[1], display_name="not known here")
    sim.soft_delete_user(ids[2])
    second = await reader.users_delta_ids(known.__contains__)
    assert not second.full and second.ids == {ids[0], ids[2]}
    assert (await reader.users_delta_ids()).ids == frozenset()
