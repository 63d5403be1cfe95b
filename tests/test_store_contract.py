"""The store protocol beyond the journal, on every store (SQLite and PostgreSQL): the same calls give
the same answers. Data as a real tenant has it: guests with #EXT#, hybrid .local addresses, several
scripts, apostrophes and quotes."""

from __future__ import annotations

import time

import pytest

from reactor.errors import StoreError
from reactor.store import AppliedChange, AuditRow, ObjectMapping, Store, SubscriptionRecord
from reactor.store.base import AuditOutcome, JournalItem
from tests.support.stores import StoreFactory

GUEST = "7c1f0e2a-51b4-4c1e-9d0a-2f6e8b3c4d5e"
HYBRID = "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"
GREEK = "5e4d3c2b-1a09-4f8e-a7d6-c5b4a3928170"
STAFF = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
REVIEWERS = "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09"


def subscription(sid: str, resource: str, state: str = "c1ient-st@te 'quoted' \"twice\"") -> SubscriptionRecord:
    now = time.time()
    return SubscriptionRecord(sid, resource, "updated,deleted", "https://reactor.contoso.com/notifications",
                              "https://reactor.contoso.com/lifecycle", state, now + 3600, now)


async def test_subscriptions_are_saved_replaced_listed_by_resource_and_deleted(any_store: Store) -> None:
    groups = subscription("ffffffff-0000-0000-0000-000000000002", "groups")
    users = subscription("aaaaaaaa-0000-0000-0000-000000000001", "users")
    await any_store.save_subscription(users)
    await any_store.save_subscription(groups)
    assert await any_store.subscriptions() == [groups, users]
    renewed = SubscriptionRecord(users.id, "users", users.change_type, users.notification_url, users.lifecycle_url,
                                 "n3w-state", users.expires_at + 86_400, users.created_at, time.time(), time.time())
    await any_store.save_subscription(renewed)
    assert await any_store.subscriptions() == [groups, renewed]
    await any_store.delete_subscription(groups.id)
    await any_store.delete_subscription("not-there")
    assert await any_store.subscriptions() == [renewed]


async def test_subscriptions_order_bytewise_whatever_the_collation(any_store: Store) -> None:
    for sid, resource in [("s3", "users"), ("s1", "groups"), ("s2", "Users"), ("s4", "groups/ÿ")]:
        await any_store.save_subscription(subscription(sid, resource))
    assert [s.resource for s in await any_store.subscriptions()] == ["Users", "groups", "groups/ÿ", "users"]


async def test_meta_set_replaced_and_removed(any_store: Store) -> None:
    link = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=Zm9vYmFy%3D%3D&$select=id,displayName"
    assert await any_store.get_meta("delta:users") is None
    await any_store.set_meta("delta:users", link)
    await any_store.set_meta("delta:users", link + "&next")
    assert await any_store.get_meta("delta:users") == link + "&next"
    await any_store.set_meta("delta:users", None)
    await any_store.set_meta("never-set", None)
    assert await any_store.get_meta("delta:users") is None


async def test_mappings_keep_their_state_and_are_replaced_listed_and_deleted(any_store: Store) -> None:
    guest = ObjectMapping("user", GUEST, "scim-guest-1",
                          {"userName": "anna.o'brien_fabrikam.com#EXT#@contoso.onmicrosoft.com",
                           "displayName": "Anna O'Brien", "active": True, "emails": ["anna.o'brien@fabrikam.com"]},
                          1_700_000_000.5)
    hybrid = ObjectMapping("user", HYBRID, "scim-hybrid-2",
                           {"userName": "j.meier@corp.contoso.local", "displayName": "Jürgen \"Jo\" Meier"}, 1_700_000_001.0)
    greek = ObjectMapping("user", GREEK, "scim-greek-3", {"displayName": "Σοφία Παπαδοπούλου · 李小龍"}, 1_700_000_002.0)
    group = ObjectMapping("group", STAFF, "scim-group-1", {"displayName": "Reception \u2013 Kø & Café"}, 1_700_000_003.0)
    for m in (guest, hybrid, greek, group):
        await any_store.put_mapping(m)
    assert await any_store.get_mapping("user", GUEST) == guest
    assert await any_store.get_mapping("group", GUEST) is None, "users and groups are apart"
    assert sorted(await any_store.mappings("user"), key=lambda m: m.entra_id) == sorted(
        [guest, hybrid, greek], key=lambda m: m.entra_id)
    assert await any_store.mappings("group") == [group]

    moved = ObjectMapping("user", GUEST, "scim-guest-9", {"active": False})
    before = time.time()
    await any_store.put_mapping(moved)
    stored = await any_store.get_mapping("user", GUEST)
    assert stored is not None and (stored.scim_id, stored.state) == ("scim-guest-9", {"active": False})
    assert stored.updated_at >= before, "no updated_at given: the store stamps the time of the write"

    await any_store.delete_mapping("user", GUEST)
    await any_store.delete_mapping("user", "not-there")
    assert await any_store.get_mapping("user", GUEST) is None
    assert {m.entra_id for m in await any_store.mappings("user")} == {HYBRID, GREEK}


async def test_memberships_updated_replaced_and_read_both_ways(any_store: Store) -> None:
    await any_store.update_members(STAFF, added=[GUEST, HYBRID, HYBRID], removed=[])
    await any_store.update_members(REVIEWERS, added=[HYBRID, GREEK], removed=["never-a-member"])
    assert await any_store.members_of(STAFF) == {GUEST, HYBRID}
    assert await any_store.groups_of(HYBRID) == {STAFF, REVIEWERS}
    assert await any_store.member_users() == {GUEST, HYBRID, GREEK}

    await any_store.update_members(STAFF, added=[GREEK, GUEST], removed=[GUEST, HYBRID])
    assert await any_store.members_of(STAFF) == {GUEST, GREEK}, "added wins over removed in one update"
    assert await any_store.groups_of(HYBRID) == {REVIEWERS}

    await any_store.replace_members(REVIEWERS, [GUEST, GUEST])
    assert await any_store.members_of(REVIEWERS) == {GUEST}
    assert await any_store.member_users() == {GUEST, GREEK}
    await any_store.replace_members(STAFF, [])
    assert await any_store.members_of(STAFF) == set()
    assert await any_store.groups_of(GREEK) == set()
    assert await any_store.member_users() == {GUEST}


async def test_dead_letters_numbered_listed_in_order_and_deleted(any_store: Store) -> None:
    change = {"kind": "user", "object_id": GUEST, "userName": "anna.o'brien_fabrikam.com#EXT#@contoso.onmicrosoft.com"}
    attempts = [{"at": 1_700_000_000.0, "error": "SCIM 400: invalid value for 'emails'"},
                {"at": 1_700_000_060.0, "error": "SCIM 400: ungültiger Wert"}]
    before = time.time()
    first = await any_store.add_dead_letter("user", GUEST, change, "SCIM 400: invalid value", attempts)
    second = await any_store.add_dead_letter("group", STAFF, {"kind": "group"}, "permanent", [])
    assert second > first
    letters = await any_store.dead_letters()
    assert [(d.id, d.kind, d.object_id, d.change, d.error, d.attempts) for d in letters] == [
        (first, "user", GUEST, change, "SCIM 400: invalid value", attempts),
        (second, "group", STAFF, {"kind": "group"}, "permanent", []),
    ]
    assert all(d.created_at >= before for d in letters)
    await any_store.delete_dead_letter(first)
    await any_store.delete_dead_letter(424242)
    assert [d.id for d in await any_store.dead_letters()] == [second]


GUEST_UPN = "anna.o'brien_fabrikam.com#EXT#@contoso.onmicrosoft.com"
HYBRID_UPN = "J.Meier@contoso.com"


def audit_row(at: float, entra_id: str, upn: str, op: str, operation: str, *, cause: str = "notification",
              reason: str = "1 notification(s) (updated)", outcome: AuditOutcome = "applied", error: str = "",
              journal_seqs: tuple[int, ...] = (), mail: str = "") -> AuditRow:
    return AuditRow(at, entra_id, upn, op, operation, cause, reason, outcome, error, journal_seqs, mail)


async def test_audit_rows_keep_every_field_and_are_read_in_order_by_user_and_since(any_store: Store) -> None:
    create = audit_row(1_700_000_000.25, GUEST, GUEST_UPN, "create_user",
                       f"create user {GUEST_UPN} (externalId {GUEST}, active)", journal_seqs=(41, 42),
                       mail="anna.o'brien@fabrikam.com")
    group = audit_row(1_700_000_000.25, STAFF, "", "ensure_group", "ensure group 'Reception \u2013 Kø & Café'",
                      cause="cli", reason="reactor sync")
    add = audit_row(1_700_000_000.25, GUEST, GUEST_UPN, "add_member", f"add user {GUEST_UPN} to group 'Reception'",
                    journal_seqs=(41, 42), mail="anna.o'brien@fabrikam.com")
    hybrid = audit_row(1_700_000_100.0, HYBRID, HYBRID_UPN, "update_user", "update user J.Meier@contoso.com: "
                       "display_name='Jürgen \"Jo\" Meier'", cause="groups delta", reason="2 notification(s); groups delta",
                       outcome="refused", error="written without emails[type eq \"work\"]: AskCody refused them",
                       mail="j.meier@corp.contoso.local")
    failed = audit_row(1_700_000_200.0, GUEST, GUEST_UPN, "set_active", f"disable user {GUEST_UPN} (SCIM s-1)",
                       cause="reconcile", reason="periodic reconcile", outcome="failed",
                       error="PermanentError: PATCH /Users/s-1: answered 400")
    await any_store.record_audit([create, group, add])
    await any_store.record_audit([])
    await any_store.record_audit([hybrid])
    await any_store.record_audit([failed])

    assert await any_store.audit() == [create, group, add, hybrid, failed], "oldest first, in the order recorded"
    assert await any_store.audit(user=GUEST) == [create, add, failed]
    assert await any_store.audit(user=GUEST_UPN.upper()) == [create, add, failed], "a UPN in any letter case"
    assert await any_store.audit(user="J.MEIER@corp.contoso.local") == [hybrid], "by e-mail"
    assert await any_store.audit(user="nobody@contoso.com") == []
    assert await any_store.audit(since=1_700_000_100.0) == [hybrid, failed]
    assert await any_store.audit(user=GUEST, since=1_700_000_000.5) == [failed]
    assert await any_store.audit(limit=2) == [hybrid, failed], "the newest rows"


async def test_recent_changes_are_the_applied_and_refused_audit_rows_newest_first(any_store: Store) -> None:
    created = audit_row(1_700_000_000.0, GUEST, GUEST_UPN, "create_user", f"create user {GUEST_UPN}",
                        reason="joined Reception")
    refused = audit_row(1_700_000_001.0, HYBRID, HYBRID_UPN, "update_user", "update user J.Meier@contoso.com",
                        reason="left every group", outcome="refused", error="written without emails: AskCody refused them")
    failed = audit_row(1_700_000_002.0, GUEST, GUEST_UPN, "set_active", "disable user", outcome="failed", error="boom")
    unnamed = audit_row(1_700_000_003.0, GREEK, "", "add_member", f"add user {GREEK} to group 'Reception'")
    await any_store.record_audit([created, refused, failed, unnamed])

    assert await any_store.recent_changes() == [
        AppliedChange(1_700_000_003.0, GREEK, f"add user {GREEK} to group 'Reception'", "1 notification(s) (updated)", ""),
        AppliedChange(1_700_000_001.0, HYBRID, "update user J.Meier@contoso.com; written without emails: AskCody refused them",
                      "left every group", HYBRID_UPN),
        AppliedChange(1_700_000_000.0, GUEST, f"create user {GUEST_UPN}", "joined Reception", GUEST_UPN),
    ]
    assert [c.entra_id for c in await any_store.recent_changes(limit=1)] == [GREEK]


async def test_prune_audit_removes_the_rows_older_than_the_cutoff(any_store: Store) -> None:
    old = [audit_row(1_600_000_000.0 + n, GUEST, GUEST_UPN, "update_user", f"update {n}") for n in range(3)]
    kept = audit_row(1_700_000_000.0, GUEST, GUEST_UPN, "add_member", "add")
    await any_store.record_audit([*old, kept])
    assert await any_store.prune_audit(1_700_000_000.0) == 3
    assert await any_store.prune_audit(1_700_000_000.0) == 0
    assert await any_store.audit() == [kept]


async def test_backlog_counts_pending_items_and_the_oldest(any_store: Store) -> None:
    assert await any_store.backlog() == (0, None)
    seqs = await any_store.append([JournalItem("user", GUEST, 1_700_000_005.25, {"id": GUEST}),
                                   JournalItem("group", STAFF, 1_700_000_001.5, {"id": STAFF})])
    await any_store.append([JournalItem("user", HYBRID, 1_700_000_009.0, {"id": HYBRID})])
    assert await any_store.backlog() == (3, 1_700_000_001.5)
    await any_store.mark_done(seqs)
    assert await any_store.backlog() == (1, 1_700_000_009.0)


async def test_pending_after_a_number_and_limited(any_store: Store) -> None:
    seqs = await any_store.append([JournalItem("user", f"u-{i}", 1.0, {"n": i}) for i in range(10)])
    page = await any_store.pending(after_seq=seqs[2], limit=4)
    assert [e.seq for e in page] == seqs[3:7]
    assert [e.payload for e in page] == [{"n": i} for i in range(3, 7)]


async def test_journal_entries_keep_every_field(any_store: Store) -> None:
    payload = {"subscriptionId": "aaaaaaaa-0000-0000-0000-000000000001", "changeType": "updated",
               "resource": f"Users/{GUEST}", "resourceData": {"id": GUEST, "displayName": "Anna O'Brien «Ωμέγα»"},
               "lifecycleEvent": None, "nested": [1, 2.5, True, {"a": "\u2028"}]}
    (seq,) = await any_store.append([JournalItem("user", GUEST, 1_700_000_000.123456, payload,
                                                 "aaaaaaaa-0000-0000-0000-000000000001", "updated")])
    (entry,) = await any_store.pending()
    assert (entry.seq, entry.kind, entry.object_id, entry.subscription_id, entry.change_type, entry.received_at,
            entry.payload) == (seq, "user", GUEST, "aaaaaaaa-0000-0000-0000-000000000001", "updated", 1_700_000_000.123456,
                               payload)


async def test_state_is_shared_by_every_store_on_the_same_database(make_store: StoreFactory) -> None:
    writer, reader = await make_store(), await make_store()
    await writer.put_mapping(ObjectMapping("user", GUEST, "scim-guest-1", {"active": True}, 1.0))
    await writer.set_meta("delta:users", "link")
    await writer.update_members(STAFF, [GUEST], [])
    assert await reader.get_mapping("user", GUEST) == ObjectMapping("user", GUEST, "scim-guest-1", {"active": True}, 1.0)
    assert await reader.get_meta("delta:users") == "link"
    assert await reader.groups_of(GUEST) == {STAFF}


async def test_ping_answers_on_an_open_store_and_fails_on_a_closed_one(make_store: StoreFactory) -> None:
    db = await make_store()
    await db.ping()
    await db.close()
    with pytest.raises(StoreError):
        await db.ping()
