"""The sync engine on its own: a fake Graph reader and a fake AskCody (tests/sync/fakes.py), a real
SQLite store. What a user of the reactor notices, per row of the contract's table "What a change in
Entra does in AskCody"; the end-to-end tests prove the same against the real clients."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from reactor.config import AskCodySettings, GroupMapping, Settings
from reactor.domain.model import EntraUser, UserAttributes
from reactor.domain.work import WorkUnit
from reactor.errors import StoreError, TransientError
from reactor.store import SQLiteStore
from reactor.store.base import JournalEntry, JournalItem
from reactor.sync.engine import SyncEngine
from tests.sync.fakes import FakeAskCody, FakeGraph

FACILITY = "Facility Management"
G_FACILITY = "5b3f0c2e-8d4a-4e6b-9f1a-2c7d8e9f0a11"
G_RECEPTION = "7e2a9d41-3c5b-4f8e-a6d2-1b0c9e8f7a22"
"""Configured without ``askcody_group``: named in AskCody by its Entra displayName."""
RECEPTION_ENTRA_NAME = "Reception Copenhagen H.Q. (Kongens Nytorv)"
G_ALL_STAFF = "9c8b7a65-4d3e-4f2a-b1c0-d9e8f7a6b533"
"""Not configured: never touched."""

ASE = EntraUser(
    id="0a1b2c3d-4e5f-4061-8728-394a5b6c7d01",
    user_principal_name="ase.obrien-norgaard@contoso.com",
    display_name="Åse O'Brien-Nørgaard",
    given_name="Åse",
    surname="O'Brien-Nørgaard",
    mail="ase.obrien-norgaard@contoso.com",
    cost_center="CC-4711",
)
GUEST = EntraUser(
    id="1b2c3d4e-5f60-4172-8839-4a5b6c7d8e02",
    user_principal_name="mikko.virtanen_fabrikam.fi#EXT#@contoso.onmicrosoft.com",
    display_name="Mikko Virtanen (Fabrikam)",
    given_name="Mikko",
    surname="Virtanen",
    mail="mikko.virtanen@fabrikam.fi",
)
HYBRID = EntraUser(
    id="2c3d4e5f-6071-4283-894a-5b6c7d8e9f03",
    user_principal_name="kenji.tanaka@contoso.com",
    display_name="田中 健二",
    given_name="健二",
    surname="田中",
    mail="kenji.tanaka@corp.contoso.local",
    cost_center="CC-0042",
)


def settings(deprovision: str = "disable") -> Settings:
    return Settings(
        askcody=AskCodySettings(deprovision=deprovision),  # type: ignore[arg-type]
        groups=(GroupMapping(G_FACILITY, askcody_group=FACILITY, grants="role"), GroupMapping(G_RECEPTION, grants="reception")),
    )


@dataclass
class Rig:
    store: SQLiteStore
    graph: FakeGraph
    scim: FakeAskCody
    engine: SyncEngine
    queued: list[JournalItem] = field(default_factory=list)
    seqs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def notified(self, kind: str, object_id: str) -> int:
        """The engine handles one notification of ``kind`` about ``object_id``, as the dispatcher hands it over."""
        seq = next(self.seqs)
        entry = JournalEntry(kind, object_id, time.time(), {}, "sub-1", "updated", seq)  # type: ignore[arg-type]
        await self.engine.handle(WorkUnit(kind, (object_id,), (entry,)))
        return seq

    async def in_entra_groups(self, user: EntraUser, *group_ids: str) -> None:
        """``user`` exists in Graph and the store knows it as a member of ``group_ids`` (as groups delta keeps it)."""
        self.graph.add_user(user)
        for gid in group_ids:
            await self.store.update_members(gid, [user.id], [])

    async def provisioned(self, user: EntraUser, *group_ids: str) -> None:
        await self.in_entra_groups(user, *group_ids)
        await self.notified("user", user.id)
        assert self.scim.user(user.user_principal_name).active
        self.scim.writes.clear()

    def queued_ids(self) -> list[str]:
        return [item.object_id for item in self.queued]


def make_rig(store: SQLiteStore, deprovision: str = "disable") -> Rig:
    graph, scim = FakeGraph(), FakeAskCody()
    graph.add_group(G_FACILITY, "Facility management (all sites)")
    graph.add_group(G_RECEPTION, RECEPTION_ENTRA_NAME)
    graph.add_group(G_ALL_STAFF, "All staff")
    queued: list[JournalItem] = []

    async def enqueue(items: Sequence[JournalItem]) -> None:
        queued.extend(items)

    engine = SyncEngine(settings(deprovision), store, graph.as_reader(), scim.as_client(), enqueue=enqueue)
    return Rig(store, graph, scim, engine, queued)


@pytest.fixture
async def rig(store: SQLiteStore) -> AsyncIterator[Rig]:
    yield make_rig(store)


# one user -----------------------------------------------------------------------------------------
async def test_a_user_in_a_configured_group_is_provisioned_into_that_groups_askcody_group(rig: Rig) -> None:
    await rig.in_entra_groups(ASE, G_FACILITY)
    await rig.notified("user", ASE.id)

    user = rig.scim.user("ase.obrien-norgaard@contoso.com")
    assert (user.external_id, user.active, user.display_name, user.family_name, user.email, user.cost_center) == (
        ASE.id, True, "Åse O'Brien-Nørgaard", "O'Brien-Nørgaard", "ase.obrien-norgaard@contoso.com", "CC-4711",
    )
    assert rig.scim.group(FACILITY).external_id == G_FACILITY
    assert rig.scim.member_names(FACILITY) == {"ase.obrien-norgaard@contoso.com"}
    assert [name for name, *_ in rig.scim.writes] == ["ensure_group", "create_user", "add_members"]
    mapping = await rig.store.get_mapping("user", ASE.id)
    assert mapping is not None and mapping.scim_id == user.id
    changes = [c.what for c in await rig.store.recent_changes()]
    assert any("ase.obrien-norgaard@contoso.com" in what and FACILITY in what for what in changes), changes

    # Told again (a duplicate notification): nothing left to do.
    rig.scim.writes.clear()
    await rig.notified("user", ASE.id)
    assert rig.scim.writes == []


async def test_a_user_only_in_a_group_that_is_not_configured_is_left_alone(rig: Rig) -> None:
    await rig.in_entra_groups(HYBRID, G_ALL_STAFF)
    await rig.notified("user", HYBRID.id)
    assert rig.scim.users == {} and rig.scim.writes == []


async def test_a_disabled_user_is_deactivated_and_keeps_its_memberships(rig: Rig) -> None:
    await rig.provisioned(GUEST, G_FACILITY)
    rig.graph.change_user(GUEST.id, account_enabled=False)
    await rig.notified("user", GUEST.id)

    scim_id = rig.scim.user(GUEST.user_principal_name).id
    assert rig.scim.writes == [("set_active", scim_id, False)]
    assert not rig.scim.user(GUEST.user_principal_name).active
    assert rig.scim.member_names(FACILITY) == {GUEST.user_principal_name}

    rig.graph.change_user(GUEST.id, account_enabled=True)
    await rig.notified("user", GUEST.id)
    assert rig.scim.user(GUEST.user_principal_name).active


async def test_a_user_removed_from_one_of_two_groups_leaves_only_that_askcody_group(rig: Rig) -> None:
    await rig.provisioned(HYBRID, G_FACILITY, G_RECEPTION)
    await rig.store.update_members(G_FACILITY, [], [HYBRID.id])
    await rig.notified("user", HYBRID.id)

    assert rig.scim.member_names(FACILITY) == set()
    assert rig.scim.member_names(RECEPTION_ENTRA_NAME) == {HYBRID.user_principal_name}
    assert rig.scim.user(HYBRID.user_principal_name).active


@pytest.mark.parametrize("deprovision", ["disable", "delete"])
async def test_a_user_removed_from_its_last_group_leaves_it_then_is_deprovisioned(
    store: SQLiteStore, deprovision: str
) -> None:
    rig = make_rig(store, deprovision)
    await rig.provisioned(ASE, G_FACILITY)
    scim_id = rig.scim.user(ASE.user_principal_name).id
    scim_group = rig.scim.group(FACILITY).id
    await store.update_members(G_FACILITY, [], [ASE.id])
    await rig.notified("user", ASE.id)

    assert rig.scim.member_names(FACILITY) == set()
    if deprovision == "disable":
        assert rig.scim.writes == [("remove_members", scim_group, [scim_id]), ("set_active", scim_id, False)]
        assert not rig.scim.user(ASE.user_principal_name).active
        assert await store.get_mapping("user", ASE.id) is not None
    else:
        assert rig.scim.writes == [("remove_members", scim_group, [scim_id]), ("delete_user", scim_id)]
        assert rig.scim.users == {}
        assert await store.get_mapping("user", ASE.id) is None


async def test_a_cost_center_change_is_one_attribute_update(rig: Rig) -> None:
    await rig.provisioned(HYBRID, G_RECEPTION)
    rig.graph.change_user(HYBRID.id, cost_center="CC-0815")
    await rig.notified("user", HYBRID.id)

    scim_id = rig.scim.user(HYBRID.user_principal_name).id
    assert rig.scim.writes == [("update_user", scim_id, {"cost_center": "CC-0815"})]
    assert rig.scim.user(HYBRID.user_principal_name).cost_center == "CC-0815"


async def test_a_group_without_askcody_group_is_named_by_its_entra_display_name(rig: Rig) -> None:
    await rig.in_entra_groups(GUEST, G_RECEPTION)
    await rig.notified("user", GUEST.id)

    group = rig.scim.group(RECEPTION_ENTRA_NAME)
    assert group.external_id == G_RECEPTION
    assert rig.scim.member_names(RECEPTION_ENTRA_NAME) == {GUEST.user_principal_name}
    assert all(g.display_name != G_RECEPTION for g in rig.scim.groups.values())


async def test_a_group_whose_entra_name_cannot_be_read_is_not_created_under_its_id(rig: Rig) -> None:
    del rig.graph.groups[G_RECEPTION]  # Graph answers 404 for the group: no name to give it
    await rig.in_entra_groups(GUEST, G_RECEPTION)
    with pytest.raises(TransientError):
        await rig.notified("user", GUEST.id)
    assert rig.scim.groups == {} and rig.scim.users == {}


async def test_a_failed_graph_read_raises_transient_and_writes_nothing(rig: Rig) -> None:
    await rig.in_entra_groups(ASE, G_FACILITY)
    rig.graph.failing[ASE.id] = TransientError(f"GET users/{ASE.id}: answered 503", status=503)

    with pytest.raises(TransientError):
        await rig.notified("user", ASE.id)
    assert rig.scim.writes == []
    assert await rig.store.get_mapping("user", ASE.id) is None
    assert await rig.store.recent_changes() == []
    assert await rig.store.dead_letters() == []

    del rig.graph.failing[ASE.id]  # the dispatcher's next try
    await rig.notified("user", ASE.id)
    assert rig.scim.member_names(FACILITY) == {ASE.user_principal_name}


async def test_askcody_down_raises_transient_and_nothing_goes_to_the_dead_letters(rig: Rig) -> None:
    await rig.in_entra_groups(ASE, G_FACILITY)
    rig.scim.failing["create_user"] = TransientError("POST /Users: answered 503", status=503)

    with pytest.raises(TransientError):
        await rig.notified("user", ASE.id)
    assert rig.scim.users == {}
    assert await rig.store.dead_letters() == []

    del rig.scim.failing["create_user"]
    await rig.notified("user", ASE.id)
    assert rig.scim.member_names(FACILITY) == {ASE.user_principal_name}


async def test_a_failed_write_is_audited_with_its_error_and_the_retry_with_its_outcome(rig: Rig) -> None:
    await rig.in_entra_groups(HYBRID, G_FACILITY)
    rig.scim.failing["create_user"] = TransientError("POST /Users: answered 503", status=503)
    with pytest.raises(TransientError):
        await rig.notified("user", HYBRID.id)
    del rig.scim.failing["create_user"]
    second = await rig.notified("user", HYBRID.id)

    rows = await rig.store.audit(user=HYBRID.mail)
    assert [(r.op, r.outcome, r.cause) for r in rows] == [
        ("create_user", "failed", "notification"),
        ("create_user", "applied", "notification"),
        ("add_member", "applied", "notification"),
    ]
    assert rows[0].error == "TransientError: POST /Users: answered 503"
    assert rows[0].journal_seqs == (second - 1,) and rows[1].journal_seqs == (second,)
    assert {r.upn for r in rows} == {HYBRID.user_principal_name}
    changes = [c.what for c in await rig.store.recent_changes() if c.entra_id == HYBRID.id]
    assert changes == [rows[2].operation, rows[1].operation], "the failed write is no change on the status page"


async def test_a_direct_sync_is_audited_as_from_the_cli(rig: Rig) -> None:
    await rig.in_entra_groups(GUEST, G_RECEPTION)
    await rig.engine.sync_user(GUEST.id, cause="replay of dead letter 3")

    rows = await rig.store.audit(user=GUEST.user_principal_name)
    assert {(r.cause, r.reason, r.journal_seqs) for r in rows} == {("cli", "replay of dead letter 3", ())}
    assert [r.op for r in rows] == ["create_user", "add_member"]
    (ensured,) = await rig.store.audit(user=G_RECEPTION)
    assert (ensured.op, ensured.upn, ensured.operation) == (
        "ensure_group", "", f"ensure group {RECEPTION_ENTRA_NAME!r} (externalId {G_RECEPTION})"
    )


@pytest.mark.parametrize("deprovision", ["disable", "delete"])
async def test_a_hard_deleted_user_is_deprovisioned(store: SQLiteStore, deprovision: str) -> None:
    rig = make_rig(store, deprovision)
    await rig.provisioned(GUEST, G_RECEPTION)
    scim_id = rig.scim.user(GUEST.user_principal_name).id
    rig.graph.delete_user(GUEST.id)  # Graph answers 404 for it now; the store still has it in the group
    await rig.notified("user", GUEST.id)

    assert rig.scim.member_names(RECEPTION_ENTRA_NAME) == set()
    if deprovision == "disable":
        assert not rig.scim.user(GUEST.user_principal_name).active
    else:
        assert scim_id not in rig.scim.users
        assert await store.get_mapping("user", GUEST.id) is None
    changes = [c.what for c in await store.recent_changes()]
    # Graph no longer knows the user's name: the change log still names it (from the mapping).
    assert any(GUEST.user_principal_name in what for what in changes[:2]), changes


# groups -------------------------------------------------------------------------------------------
async def test_a_groups_round_stores_memberships_and_queues_the_affected_users(rig: Rig) -> None:
    for user in (ASE, GUEST, HYBRID):
        rig.graph.add_user(user)
    rig.graph.add_member(G_FACILITY, ASE.id)
    rig.graph.add_member(G_RECEPTION, GUEST.id)
    rig.graph.add_member(G_ALL_STAFF, HYBRID.id)

    first = await rig.notified("group", G_FACILITY)
    assert sorted(rig.queued_ids()) == sorted([ASE.id, GUEST.id])  # HYBRID is only in a group not configured
    item = rig.queued[0]
    assert item.kind == "user" and "groups delta" in item.payload["cause"] and item.payload["caused_by"] == [first]
    assert await rig.store.members_of(G_FACILITY) == {ASE.id}
    assert await rig.store.members_of(G_ALL_STAFF) == set()
    assert rig.scim.writes == []  # the users are queued, not synced inside the group round

    rig.queued.clear()
    rig.graph.remove_member(G_FACILITY, ASE.id)
    rig.graph.add_member(G_RECEPTION, HYBRID.id)
    rig.graph.add_member(G_ALL_STAFF, GUEST.id)
    await rig.notified("group", G_RECEPTION)
    assert sorted(rig.queued_ids()) == sorted([ASE.id, HYBRID.id])
    assert await rig.store.groups_of(ASE.id) == set()
    assert await rig.store.members_of(G_RECEPTION) == {GUEST.id, HYBRID.id}

    rig.queued.clear()
    await rig.notified("group", G_RECEPTION)  # nothing changed since
    assert rig.queued == []


async def test_a_groups_round_whose_users_could_not_be_queued_is_read_again(store: SQLiteStore) -> None:
    rig = make_rig(store)
    rig.graph.add_user(ASE)
    await rig.notified("group", G_FACILITY)  # the first (full) round, before anything happened
    rig.graph.add_member(G_FACILITY, ASE.id)

    async def journal_down(items: Sequence[JournalItem]) -> None:
        raise StoreError("the journal is not writable")

    rig.engine.enqueue = journal_down
    with pytest.raises(StoreError):
        await rig.notified("group", G_FACILITY)

    queued: list[JournalItem] = []

    async def journal_up(items: Sequence[JournalItem]) -> None:
        queued.extend(items)

    rig.engine.enqueue = journal_up
    await rig.notified("group", G_FACILITY)
    assert [i.object_id for i in queued] == [ASE.id]


async def test_a_deleted_group_costs_its_members_that_group_and_queues_them(rig: Rig) -> None:
    rig.graph.add_user(GUEST)
    rig.graph.add_member(G_RECEPTION, GUEST.id)
    await rig.notified("group", G_RECEPTION)
    rig.queued.clear()

    rig.graph.delete_group(G_RECEPTION)
    await rig.notified("group", G_RECEPTION)
    assert rig.queued_ids() == [GUEST.id]
    assert await rig.store.groups_of(GUEST.id) == set()


async def test_a_reconcile_queues_the_known_users_that_changed_in_entra(rig: Rig) -> None:
    await rig.provisioned(ASE, G_FACILITY)
    rig.graph.add_member(G_FACILITY, ASE.id)
    rig.graph.add_user(HYBRID)
    await rig.notified("reconcile", "all")  # the first one is a full round: every known user
    assert rig.queued_ids() == [ASE.id] and rig.queued[0].payload["reconcile"] is True

    rig.queued.clear()
    rig.graph.change_user(ASE.id, surname="O'Brien")
    rig.graph.change_user(HYBRID.id, surname="Tanaka")  # in no configured group, never provisioned
    await rig.notified("reconcile", "all")
    assert rig.queued_ids() == [ASE.id]
    assert rig.scim.writes == []  # queued for the workers, not written by the reconcile itself


# writes without reads ------------------------------------------------------------------------------
async def test_a_change_of_a_provisioned_user_is_planned_from_the_state_applied_without_asking_askcody(rig: Rig) -> None:
    await rig.provisioned(ASE, G_FACILITY)
    rig.scim.failing["get_user"] = rig.scim.failing["find_user"] = TransientError("AskCody must not be read")
    rig.graph.change_user(ASE.id, cost_center="CC-0815")
    await rig.notified("user", ASE.id)
    assert rig.scim.writes == [("update_user", rig.scim.user(ASE.user_principal_name).id, {"cost_center": "CC-0815"})]


async def test_a_write_that_finds_the_user_gone_from_askcody_reads_again_and_provisions_it_anew(rig: Rig) -> None:
    await rig.provisioned(ASE, G_FACILITY)
    gone = rig.scim.user(ASE.user_principal_name).id
    await rig.scim.delete_user(gone)  # by hand, in AskCody
    rig.scim.writes.clear()
    rig.graph.change_user(ASE.id, display_name="Åse O'Brien")
    await rig.notified("user", ASE.id)
    back = rig.scim.user(ASE.user_principal_name)
    assert back.id != gone and back.display_name == "Åse O'Brien" and back.active
    assert rig.scim.member_names(FACILITY) == {ASE.user_principal_name}
    assert [name for name, *_ in rig.scim.writes] == ["update_user", "create_user", "add_members"]
    assert await rig.store.dead_letters() == []
    audit = await rig.store.audit(ASE.id)
    assert [(r.op, r.outcome) for r in audit][-2:] == [("create_user", "applied"), ("add_member", "applied")]
    assert "update_user" not in [r.op for r in audit[-3:]]


async def test_a_unit_stopped_between_askcodys_answer_and_the_state_kept_reads_askcody_next_time(rig: Rig) -> None:
    # A replica killed (or a stop that cancels the unit) right after AskCody applied a removal: the
    # state last applied still says "member". The next change must not be planned from it.
    await rig.provisioned(HYBRID, G_FACILITY, G_RECEPTION)
    removed = rig.scim.remove_members
    applied, answered = asyncio.Event(), asyncio.Event()

    async def applied_then_stalled(scim_group_id: str, user_ids: Iterable[str]) -> None:
        await removed(scim_group_id, user_ids)
        applied.set()
        await answered.wait()  # AskCody applied it; the unit is stopped before its answer arrives

    rig.scim.remove_members = applied_then_stalled  # type: ignore[method-assign]
    await rig.store.update_members(G_FACILITY, [], [HYBRID.id])
    unit = asyncio.create_task(rig.notified("user", HYBRID.id))
    await asyncio.wait_for(applied.wait(), timeout=10)
    unit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unit
    answered.set()
    assert rig.scim.member_names(FACILITY) == set()
    rig.scim.remove_members = removed  # type: ignore[method-assign]
    await rig.store.update_members(G_FACILITY, [HYBRID.id], [])  # back in Entra before the unit ran again
    await rig.notified("user", HYBRID.id)
    assert rig.scim.member_names(FACILITY) == {HYBRID.user_principal_name}
    assert rig.scim.member_names(RECEPTION_ENTRA_NAME) == {HYBRID.user_principal_name}


async def test_many_new_users_of_a_groups_round_are_matched_from_one_listing_not_a_lookup_each(rig: Rig) -> None:
    # Made by hand in AskCody before the reactor knew him: adopted, not created twice.
    by_hand, _ = await rig.scim.create_user(UserAttributes(
        user_name=HYBRID.user_principal_name, external_id="", display_name="Kenji T.", given_name=None,
        family_name=None, email=None, cost_center=None))
    rig.scim.writes.clear()
    people = [HYBRID, ASE, GUEST] + [
        dataclasses.replace(ASE, id=f"3d4e5f60-7182-4394-8a5b-6c7d8e9f0a{i:02d}",
                            user_principal_name=f"sinéad.o'connor{i}@contoso.com", mail=f"sinead.oconnor{i}@contoso.com",
                            display_name=f"Sinéad O'Connor {i}")
        for i in range(5)
    ]
    for person in people:
        rig.graph.add_user(person)
        rig.graph.add_member(G_FACILITY, person.id)
    await rig.notified("group", G_FACILITY)
    assert sorted(rig.queued_ids()) == sorted(p.id for p in people)
    rig.scim.failing["find_user"] = rig.scim.failing["get_user"] = TransientError("no lookup per user")
    for person in people:
        await rig.notified("user", person.id)

    adopted = rig.scim.user(HYBRID.user_principal_name)
    assert adopted.id == by_hand.id and adopted.external_id == HYBRID.id and adopted.display_name == "田中 健二"
    assert len(rig.scim.users) == len(people)
    assert rig.scim.member_names(FACILITY) == {p.user_principal_name for p in people}
    assert sorted(name for name, *_ in rig.scim.writes).count("create_user") == len(people) - 1
