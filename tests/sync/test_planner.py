"""The planner, row by row of the contract's table "What a change in Entra does in AskCody"."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.config import AskCodySettings, GroupMapping, Settings
from reactor.domain.model import EntraUser, ScimUser, UserFacts
from reactor.domain.operations import (
    AddMember,
    CreateUser,
    DeleteUser,
    EnsureGroup,
    Operation,
    RemoveMember,
    SetActive,
    UpdateUser,
    as_json,
    describe,
)
from reactor.sync.planner import (
    attribute_changes,
    in_scope_groups,
    plan_user,
    user_attributes,
)

UID = "11111111-1111-1111-1111-111111111111"
G1 = "aaaaaaaa-0000-0000-0000-000000000001"
G2 = "aaaaaaaa-0000-0000-0000-000000000002"
G3 = "aaaaaaaa-0000-0000-0000-000000000003"  # a group that is not configured
GROUP_IDS = {G1: "scim-g1", G2: "scim-g2"}
SCIM_OF = {**GROUP_IDS, G3: "scim-g3"}
SID = "scim-user-1"


def config(deprovision: str = "disable") -> Settings:
    return Settings(
        askcody=AskCodySettings(deprovision=deprovision),  # type: ignore[arg-type]
        groups=(GroupMapping(G1, askcody_group="Facility Management"), GroupMapping(G2, grants="reception")),
    )


DISABLE = config("disable")
DELETE = config("delete")


def entra(**changes: object) -> EntraUser:
    base = EntraUser(
        id=UID,
        user_principal_name="alice@contoso.com",
        display_name="Alice Jensen",
        given_name="Alice",
        surname="Jensen",
        mail="alice@contoso.com",
        account_enabled=True,
        cost_center="CC-100",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def facts(*groups: str, user: EntraUser | None = None, gone: bool = False, **changes: object) -> UserFacts:
    if gone:
        return UserFacts(UID, None, frozenset(groups))
    return UserFacts(UID, user or entra(**changes), frozenset(groups))


def scim(*groups: str, **changes: object) -> ScimUser:
    """The AskCody user as provisioning left it, member of ``groups`` (Entra ids)."""
    base = ScimUser(
        id=SID,
        user_name="alice@contoso.com",
        external_id=UID,
        active=True,
        display_name="Alice Jensen",
        given_name="Alice",
        family_name="Jensen",
        email="alice@contoso.com",
        cost_center="CC-100",
        groups=frozenset(SCIM_OF[g] for g in groups),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def plan(f: UserFacts, current: ScimUser | None, s: Settings = DISABLE, **kw: object) -> list[Operation]:
    kw.setdefault("group_ids", GROUP_IDS)
    return plan_user(f, current, s, **kw)  # type: ignore[arg-type]


CREATE = CreateUser(UID, user_attributes(entra()), active=True)


# Each row: (name, facts, current AskCody user, settings, expected operations).
CONTRACT: list[tuple[str, UserFacts, ScimUser | None, Settings, list[Operation]]] = [
    (
        "added to a group in scope, not yet provisioned: created, then added",
        facts(G1),
        None,
        DISABLE,
        [CREATE, AddMember(G1, UID, "scim-g1", None)],
    ),
    (
        "added to a group in scope, disabled in Entra: created inactive, then added",
        facts(G1, account_enabled=False),
        None,
        DISABLE,
        [CreateUser(UID, user_attributes(entra()), active=False), AddMember(G1, UID, "scim-g1", None)],
    ),
    (
        "added to a group in scope, found deprovisioned: re-activated, then added",
        facts(G1),
        scim(active=False),
        DISABLE,
        [SetActive(UID, SID, True), AddMember(G1, UID, "scim-g1", SID)],
    ),
    (
        "added to a group in scope, found by userName (created by hand): adopted, then added",
        facts(G1),
        scim(external_id=None, display_name="alice"),
        DISABLE,
        [UpdateUser(UID, SID, {"external_id": UID, "display_name": "Alice Jensen"}), AddMember(G1, UID, "scim-g1", SID)],
    ),
    (
        "added to a further group in scope: added to that group",
        facts(G1, G2),
        scim(G1),
        DISABLE,
        [AddMember(G2, UID, "scim-g2", SID)],
    ),
    (
        "removed from a group, still in another in scope: removed from that group only",
        facts(G1),
        scim(G1, G2),
        DISABLE,
        [RemoveMember(G2, UID, "scim-g2", SID)],
    ),
    (
        "removed from the last group in scope (disable): removed, then disabled",
        facts(),
        scim(G1),
        DISABLE,
        [RemoveMember(G1, UID, "scim-g1", SID), SetActive(UID, SID, False)],
    ),
    (
        "removed from the last group in scope (delete): removed, then deleted",
        facts(),
        scim(G1),
        DELETE,
        [RemoveMember(G1, UID, "scim-g1", SID), DeleteUser(UID, SID)],
    ),
    (
        "removed from the last group in scope, still in an unconfigured group: deprovisioned",
        facts(G3),
        scim(G1, G3),
        DISABLE,
        [RemoveMember(G1, UID, "scim-g1", SID), SetActive(UID, SID, False)],
    ),
    (
        "accountEnabled set false: active false, memberships kept",
        facts(G1, account_enabled=False),
        scim(G1),
        DISABLE,
        [SetActive(UID, SID, False)],
    ),
    (
        "accountEnabled set true: active true, memberships kept",
        facts(G1, G2),
        scim(G1, G2, active=False),
        DISABLE,
        [SetActive(UID, SID, True)],
    ),
    (
        "soft-deleted (disable): removed from its groups, disabled",
        facts(G1, G2, state="soft_deleted"),
        scim(G1, G2),
        DISABLE,
        [RemoveMember(G1, UID, "scim-g1", SID), RemoveMember(G2, UID, "scim-g2", SID), SetActive(UID, SID, False)],
    ),
    (
        "soft-deleted (delete): removed from its groups, deleted",
        facts(G1, state="soft_deleted"),
        scim(G1),
        DELETE,
        [RemoveMember(G1, UID, "scim-g1", SID), DeleteUser(UID, SID)],
    ),
    (
        "restored after a soft delete (disable): enabled, memberships back",
        facts(G1, G2),
        scim(active=False),
        DISABLE,
        [SetActive(UID, SID, True), AddMember(G1, UID, "scim-g1", SID), AddMember(G2, UID, "scim-g2", SID)],
    ),
    (
        "restored after a soft delete (delete): provisioned again",
        facts(G1),
        None,
        DELETE,
        [CREATE, AddMember(G1, UID, "scim-g1", None)],
    ),
    (
        "permanently deleted (disable): removed, disabled",
        facts(state="hard_deleted", user=EntraUser(id=UID, state="hard_deleted")),
        scim(G1),
        DISABLE,
        [RemoveMember(G1, UID, "scim-g1", SID), SetActive(UID, SID, False)],
    ),
    (
        "permanently deleted (delete): removed, deleted",
        facts(state="hard_deleted", user=EntraUser(id=UID, state="hard_deleted")),
        scim(G1),
        DELETE,
        [RemoveMember(G1, UID, "scim-g1", SID), DeleteUser(UID, SID)],
    ),
    (
        "unknown to Graph (delete): removed, deleted",
        facts(gone=True),
        scim(G2),
        DELETE,
        [RemoveMember(G2, UID, "scim-g2", SID), DeleteUser(UID, SID)],
    ),
    (
        "cost center changed: costCenter replaced",
        facts(G1, cost_center="CC-200"),
        scim(G1),
        DISABLE,
        [UpdateUser(UID, SID, {"cost_center": "CC-200"})],
    ),
    (
        "name changed: givenName, familyName and displayName replaced",
        facts(G1, given_name="Alicia", surname="Berg", display_name="Alicia Berg"),
        scim(G1),
        DISABLE,
        [UpdateUser(UID, SID, {"given_name": "Alicia", "family_name": "Berg", "display_name": "Alicia Berg"})],
    ),
    (
        "mail changed: work e-mail replaced",
        facts(G1, mail="alicia@contoso.com"),
        scim(G1),
        DISABLE,
        [UpdateUser(UID, SID, {"email": "alicia@contoso.com"})],
    ),
    (
        "UPN changed: userName replaced",
        facts(G1, user_principal_name="alicia@contoso.com"),
        scim(G1),
        DISABLE,
        [UpdateUser(UID, SID, {"user_name": "alicia@contoso.com"})],
    ),
]


@pytest.mark.parametrize(("name", "f", "current", "s", "expected"), CONTRACT, ids=[row[0] for row in CONTRACT])
def test_contract_table(name: str, f: UserFacts, current: ScimUser | None, s: Settings, expected: list[Operation]) -> None:
    ops = plan(f, current, s)
    assert ops == expected
    assert apply_and_replan(f, current, s, ops) == []


COST_CENTERS = [
    ("set where there was none", None, "CC-1", {"cost_center": "CC-1"}),
    ("changed", "CC-1", "CC-2", {"cost_center": "CC-2"}),
    ("cleared", "CC-1", None, {"cost_center": None}),
    ("cleared to an empty string", "CC-1", "", {"cost_center": None}),
    ("whitespace only is no value", None, "  ", None),
    ("case matters", "cc-1", "CC-1", {"cost_center": "CC-1"}),
    ("unchanged", "CC-1", "CC-1", None),
]


@pytest.mark.parametrize(("before", "after", "changes"), [row[1:] for row in COST_CENTERS], ids=[r[0] for r in COST_CENTERS])
def test_each_cost_center_change(before: str | None, after: str | None, changes: dict[str, str | None] | None) -> None:
    f = facts(G1, cost_center=after)
    current = scim(G1, cost_center=before)
    expected = [] if changes is None else [UpdateUser(UID, SID, changes)]
    assert plan(f, current) == expected
    assert apply_and_replan(f, current, DISABLE, expected) == []


def test_several_groups_at_once_on_create_are_ordered_create_first() -> None:
    ops = plan(facts(G2, G1, G3), None)
    assert ops == [CREATE, AddMember(G1, UID, "scim-g1", None), AddMember(G2, UID, "scim-g2", None)]


def test_several_membership_changes_at_once() -> None:
    ops = plan(facts(G2, cost_center="CC-9"), scim(G1))
    assert ops == [
        UpdateUser(UID, SID, {"cost_center": "CC-9"}),
        AddMember(G2, UID, "scim-g2", SID),
        RemoveMember(G1, UID, "scim-g1", SID),
    ]


@pytest.mark.parametrize(
    ("f", "current"),
    [
        (facts(), None),
        (facts(G3), None),
        (facts(G1, state="soft_deleted"), None),
        (facts(gone=True), None),
        (facts(state="hard_deleted", user=EntraUser(id=UID, state="hard_deleted")), None),
    ],
    ids=["in no group", "only in an unconfigured group", "soft-deleted", "unknown to Graph", "hard-deleted"],
)
def test_a_user_outside_scope_gets_nothing(f: UserFacts, current: ScimUser | None) -> None:
    assert not in_scope_groups(f, DISABLE)
    assert plan(f, current) == []
    assert plan(f, current, DELETE) == []


def test_a_user_created_by_hand_outside_scope_is_left_alone() -> None:
    by_hand = scim(G3, external_id=None)
    assert plan(facts(G3), by_hand) == []
    assert plan(facts(G3), by_hand, DELETE) == []


def test_a_user_created_by_hand_outside_scope_still_leaves_configured_groups() -> None:
    by_hand = scim(G1, external_id="someone-else")
    assert plan(facts(), by_hand) == [RemoveMember(G1, UID, "scim-g1", SID)]


def test_unconfigured_groups_are_never_touched() -> None:
    assert plan(facts(G1, G3), scim(G1)) == []
    assert plan(facts(G1), scim(G1, G3)) == []


def test_re_adding_after_a_deprovision() -> None:
    f_out = facts()
    current = scim(G1, G2)
    out = plan(f_out, current)
    assert out == [RemoveMember(G1, UID, "scim-g1", SID), RemoveMember(G2, UID, "scim-g2", SID), SetActive(UID, SID, False)]
    deprovisioned = apply(out, current)
    assert deprovisioned is not None and not deprovisioned.active and not deprovisioned.groups

    back = plan(facts(G2), deprovisioned)
    assert back == [SetActive(UID, SID, True), AddMember(G2, UID, "scim-g2", SID)]
    assert apply_and_replan(facts(G2), deprovisioned, DISABLE, back) == []


def test_re_adding_after_a_delete_creates_again() -> None:
    out = plan(facts(), scim(G1), DELETE)
    assert apply(out, scim(G1)) is None
    assert plan(facts(G1), None, DELETE) == [CREATE, AddMember(G1, UID, "scim-g1", None)]


def test_deprovision_disable_versus_delete() -> None:
    assert plan(facts(), scim(G1), DISABLE)[-1] == SetActive(UID, SID, False)
    assert plan(facts(), scim(G1), DELETE)[-1] == DeleteUser(UID, SID)
    # Already disabled: nothing more to do with "disable"; "delete" still deletes.
    assert plan(facts(), scim(active=False), DISABLE) == []
    assert plan(facts(), scim(active=False), DELETE) == [DeleteUser(UID, SID)]


def test_leaving_scope_takes_no_attribute_updates() -> None:
    assert plan(facts(cost_center="CC-NEW"), scim(G1)) == [RemoveMember(G1, UID, "scim-g1", SID), SetActive(UID, SID, False)]


def without(f: UserFacts, group_id: str) -> UserFacts:
    """The facts once a group is deleted: the engine replans each member without it."""
    return dataclasses.replace(f, groups=f.groups - {group_id})


def test_a_group_deleted_in_entra() -> None:
    other = "22222222-2222-2222-2222-222222222222"
    alice = (facts(G1, G2), scim(G1, G2))  # still in G2: loses G1 only
    bob_facts = UserFacts(other, entra(id=other, user_principal_name="bob@contoso.com"), frozenset({G1}))
    bob = (bob_facts, dataclasses.replace(scim(G1), id="scim-bob", external_id=other, user_name="bob@contoso.com"))
    ops = [op for f, c in (alice, bob) for op in plan(without(f, G1), c, DISABLE)]
    assert ops == [
        RemoveMember(G1, UID, "scim-g1", SID),
        RemoveMember(G1, other, "scim-g1", "scim-bob"),
        SetActive(other, "scim-bob", False),
    ]
    delete = plan(without(bob[0], G1), bob[1], DELETE)
    assert delete == [RemoveMember(G1, other, "scim-g1", "scim-bob"), DeleteUser(other, "scim-bob")]


def test_groups_missing_in_askcody_are_ensured_before_use() -> None:
    ops = plan(facts(G1, G2), None, group_ids={G1: "scim-g1"}, group_names={G2: "Reception Desk"})
    assert ops == [EnsureGroup(G2, "Reception Desk"), CREATE, AddMember(G1, UID, "scim-g1", None), AddMember(G2, UID, None, None)]
    # askcody_group wins over the Entra name; the group id is the last resort.
    assert plan(facts(G1), None, group_ids={})[0] == EnsureGroup(G1, "Facility Management")
    assert plan(facts(G2), scim(), group_ids={})[0] == EnsureGroup(G2, G2)


def test_group_members_are_the_authority_when_given() -> None:
    current = scim(G1)  # the user resource claims G1 …
    members: Mapping[str, frozenset[str]] = {"scim-g1": frozenset(), "scim-g2": frozenset({SID})}  # … the groups say G2
    assert plan_user(facts(G1), current, DISABLE, members, group_ids=GROUP_IDS) == [
        AddMember(G1, UID, "scim-g1", SID),
        RemoveMember(G2, UID, "scim-g2", SID),
    ]


def test_user_name_and_email_compare_without_case() -> None:
    assert plan(facts(G1), scim(G1, user_name="ALICE@contoso.com", email="Alice@Contoso.com")) == []


def test_attribute_mapping() -> None:
    attrs = user_attributes(entra())
    assert attrs.as_dict() == {
        "user_name": "alice@contoso.com",
        "external_id": UID,
        "display_name": "Alice Jensen",
        "given_name": "Alice",
        "family_name": "Jensen",
        "email": "alice@contoso.com",
        "cost_center": "CC-100",
    }
    assert attribute_changes(attrs, scim()) == {}


def test_describe_and_json_for_dry_run() -> None:
    ops = plan(facts(G1, G2), None, group_ids={G1: "scim-g1"}) + plan(facts(), scim(G1))
    lines = [describe(op) for op in ops]
    assert lines[0] == f"ensure group '{G2}' (externalId {G2})"
    assert lines[1] == f"create user alice@contoso.com (externalId {UID}, active)"
    assert f"disable user {UID} (SCIM {SID})" in lines
    assert describe(UpdateUser(UID, SID, {"email": None, "cost_center": "X"})) == (
        f"update user {UID} (SCIM {SID}): cost_center='X', email=(none)"
    )
    doc = as_json(ops[1])
    assert doc["op"] == "create_user" and doc["attrs"]["cost_center"] == "CC-100" and doc["active"] is True


# -- idempotence: planning on the state a plan leads to gives [] ---------------------------------------------


def apply(ops: Sequence[Operation], current: ScimUser | None) -> ScimUser | None:
    """What AskCody holds after ``ops`` (a model of the SCIM writes)."""
    state = current
    for op in ops:
        match op:
            case CreateUser(attrs=a, active=active):
                state = ScimUser(
                    SID,
                    a.user_name,
                    a.external_id,
                    active,
                    a.display_name,
                    a.given_name,
                    a.family_name,
                    a.email,
                    a.cost_center,
                )
            case UpdateUser(changes=changes):
                assert state is not None
                state = dataclasses.replace(state, **changes)  # UserAttributes and ScimUser share the names
            case SetActive(active=active):
                assert state is not None
                state = dataclasses.replace(state, active=active)
            case DeleteUser():
                state = None
            case AddMember(entra_group_id=g):
                assert state is not None
                state = dataclasses.replace(state, groups=state.groups | {SCIM_OF[g]})
            case RemoveMember(scim_group_id=sg):
                assert state is not None
                state = dataclasses.replace(state, groups=state.groups - {sg})
            case EnsureGroup():
                pass
    return state


def apply_and_replan(f: UserFacts, current: ScimUser | None, s: Settings, ops: Sequence[Operation]) -> list[Operation]:
    return plan(f, apply(ops, current), s)


names = st.one_of(st.none(), st.sampled_from(["", "Alice", "alice", "Bob", " Carol "]))
entra_users = st.builds(
    EntraUser,
    id=st.just(UID),
    user_principal_name=st.sampled_from(["alice@contoso.com", "ALICE@contoso.com", "alicia@contoso.com"]),
    display_name=names,
    given_name=names,
    surname=names,
    mail=st.one_of(st.none(), st.sampled_from(["alice@contoso.com", "a@contoso.com"])),
    account_enabled=st.booleans(),
    cost_center=st.one_of(st.none(), st.sampled_from(["", "CC-1", "CC-2"])),
    state=st.sampled_from(["present", "present", "soft_deleted", "hard_deleted"]),
)
group_sets = st.frozensets(st.sampled_from([G1, G2, G3]))
scim_users = st.one_of(
    st.none(),
    st.builds(
        ScimUser,
        id=st.just(SID),
        user_name=st.sampled_from(["alice@contoso.com", "old@contoso.com"]),
        external_id=st.sampled_from([UID, None, "other"]),
        active=st.booleans(),
        display_name=names,
        given_name=names,
        family_name=names,
        email=st.one_of(st.none(), st.just("old@contoso.com")),
        cost_center=st.one_of(st.none(), st.just("CC-1")),
        groups=group_sets.map(lambda gs: frozenset(SCIM_OF[g] for g in gs)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(user=st.one_of(st.none(), entra_users), groups=group_sets, current=scim_users, delete=st.booleans())
def test_plans_are_idempotent(user: EntraUser | None, groups: frozenset[str], current: ScimUser | None, delete: bool) -> None:
    f = UserFacts(UID, user, groups)
    s = DELETE if delete else DISABLE
    ops = plan(f, current, s)
    assert apply_and_replan(f, current, s, ops) == []
    kinds = [type(op) for op in ops]
    if CreateUser in kinds:
        assert all(kinds.index(CreateUser) < i for i, k in enumerate(kinds) if k is AddMember)
    deprovision = [
        i for i, op in enumerate(ops) if isinstance(op, DeleteUser) or (isinstance(op, SetActive) and not in_scope_groups(f, s))
    ]
    assert all(i > j for i in deprovision for j, k in enumerate(kinds) if k is RemoveMember)
