"""The engine with the real AskCody client and the real scim2-server (a fake Graph, a real SQLite
store): the version AskCody gave a user is kept with the state applied, and the next write planned
from that state expects it (``If-Match``). A user edited by hand in AskCody meanwhile refuses that
write (412), also when it travels in a bulk request with other users' writes: the engine reads the
user afresh and plans again, so the hand edit of an attribute it manages is repaired with the change."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reactor.config import AskCodySettings, GroupMapping, Secret, Settings
from reactor.domain.model import EntraUser
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient
from reactor.scim.resources import ENTERPRISE_USER
from reactor.store import SQLiteStore
from reactor.sync.engine import SyncEngine
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.scim_server import ScimServer, scim_server
from tests.sync.fakes import FakeGraph

G_RECEPTION = "7e2a9d41-3c5b-4f8e-a6d2-1b0c9e8f7a22"
PEOPLE = [
    EntraUser(id=f"0a1b2c3d-4e5f-4061-8728-394a5b6c7d0{i}", user_principal_name=upn,
              display_name=display, given_name=display.split()[0], surname=display.split()[-1],
              mail=mail, cost_center="CC-100")
    for i, (upn, mail, display) in enumerate([
        ("ase.obrien@contoso.com", "ase.obrien@contoso.com", "Åse O'Brien-Nørgaard"),
        ("kenji.tanaka@contoso.com", "kenji.tanaka@contoso.com", "田中 健二"),
        # A guest: the UPN Entra gives an invited account, the mail of the home tenant.
        ("amira.haddad_fabrikam.co.ma#EXT#@contoso.onmicrosoft.com", "amira.haddad@fabrikam.co.ma", "Amira Haddad"),
        ("joerg.mueller@contoso.com", "jörg.müller@contoso.com", "Jörg Müller"),
    ])
]


@dataclasses.dataclass
class Rig:
    server: ScimServer
    proxy: FaultProxy
    graph: FakeGraph
    store: SQLiteStore
    engine: SyncEngine

    async def provisioned(self) -> None:
        for person in PEOPLE:
            self.graph.add_user(person)
            await self.store.update_members(G_RECEPTION, [person.id], [])
        await asyncio.gather(*(self.engine.sync_user(p.id, cause="test") for p in PEOPLE))

    def held(self, entra_id: str) -> dict[str, Any]:
        found = [u for u in self.server.resources("User") if u.external_id == entra_id]
        assert len(found) == 1, found
        data: dict[str, Any] = found[0].model_dump(by_alias=True)
        return data

    async def by_hand(self, entra_id: str, **values: Any) -> None:
        """Replace attributes of the user directly in scim2-server, as an administrator would in AskCody."""
        await self.server.by_hand(self.held(entra_id)["id"], **values)


@pytest.fixture
async def rig(store: SQLiteStore, retry_testing: None) -> AsyncIterator[Rig]:
    async with scim_server() as server, fault_proxy(server.url) as proxy:
        settings = Settings(
            askcody=AskCodySettings(scim_url=proxy.url, token=Secret(server.token)),
            groups=(GroupMapping(G_RECEPTION, askcody_group="Reception", grants="reception"),),
        )
        graph = FakeGraph()
        graph.add_group(G_RECEPTION, "Reception CPH")
        # A low rate makes the writes of the users wait for tokens together: they share bulk requests.
        async with AskCodyClient(settings.askcody, TokenBucket(20, burst=1)) as client:
            yield Rig(server, proxy, graph, store, SyncEngine(settings, store, graph.as_reader(), client))


def cost_center(user: dict[str, Any]) -> Any:
    return (user.get(ENTERPRISE_USER) or {}).get("costCenter")


async def test_the_version_askcody_answered_is_kept_and_the_next_write_expects_it(rig: Rig) -> None:
    await rig.provisioned()
    ase = PEOPLE[0]
    mapping = await rig.store.get_mapping("user", ase.id)
    assert mapping is not None and mapping.state["version"] == rig.held(ase.id)["meta"]["version"]
    rig.graph.change_user(ase.id, cost_center="CC-4711")
    await rig.engine.sync_user(ase.id, cause="test")
    patches = [r for r in rig.proxy.log if r.method == "PATCH" and r.path == f"/Users/{mapping.scim_id}"]
    assert [r.header("If-Match") for r in patches] == [mapping.state["version"]]
    after = await rig.store.get_mapping("user", ase.id)
    assert after is not None and after.state["version"] == rig.held(ase.id)["meta"]["version"] != mapping.state["version"]


async def test_a_412_in_a_bulk_result_reads_the_user_afresh_and_repairs_the_hand_edit(rig: Rig) -> None:
    await rig.provisioned()
    edited = PEOPLE[0]
    await rig.by_hand(edited.id, displayName="Changed by hand", active=False)
    for person in PEOPLE:
        rig.graph.change_user(person.id, cost_center="CC-4711")
    rig.proxy.log.clear()
    # The bucket's one token taken first: every user's write waits for the next and all go in one bulk
    # request. With a token at hand, whichever write came first went alone (the edited user's, at times).
    await rig.engine.scim.bucket.acquire()

    await asyncio.gather(*(rig.engine.sync_user(p.id, cause="test") for p in PEOPLE))

    in_bulk = [op for r in rig.proxy.log if r.path == "/Bulk" for op in r.json()["Operations"]]
    assert [op for op in in_bulk if op["path"] == f"/Users/{rig.held(edited.id)['id']}" and op.get("version")], (
        "the edited user's conditional PATCH did not travel in a bulk request"
    )
    for person in PEOPLE:
        held = rig.held(person.id)
        assert cost_center(held) == "CC-4711" and held["active"] is True
        assert held["displayName"] == person.display_name  # the hand edit repaired with the change
    assert rig.proxy.count("GET", f"/Users/{rig.held(edited.id)['id']}") == 1  # the edited user alone read afresh
    assert await rig.store.dead_letters() == []
