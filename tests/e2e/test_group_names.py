"""A group in scope without ``askcody_group`` is named in AskCody by its Entra displayName (the
contract's default), never by its GUID, on every path: start-up reconcile, groups delta (a member
added, with and without a change of the user itself) and ``reactor sync``."""

from __future__ import annotations

import uuid
from pathlib import Path

from graphsim import GraphSimulator
from reactor.demo.stack import local_stack
from tests.e2e.helpers import add_user, ready
from tests.support.eventually import eventually

NAMES = ("Réception – København", "O'Brien's \"Team\"", "Facility Management (Søborg)", "Служба приёма")  # noqa: RUF001  (real names carry en dashes)


async def test_groups_without_an_askcody_name_take_their_entra_display_name(tmp_path: Path) -> None:
    sim = GraphSimulator(token="sim-token")
    at_start, by_delta, by_user, by_sync = (sim.add_group(display_name=n) for n in NAMES)
    alice = add_user(sim, "alice")
    sim.add_member(at_start, alice)
    async with local_stack(
        sim, {g: ("", "role") for g in (at_start, by_delta, by_user, by_sync)}, tmp_path / "reactor.db",
        sync={"reconcile_interval_seconds": 3600.0},
    ) as stack:
        await ready(stack)

        async def named(name: str, uid: str) -> bool:
            return uid in (await stack.askcody_groups()).get(name, set())

        await eventually(lambda: named(NAMES[0], alice), "start-up reconcile: the group under its displayName")

        bob = add_user(sim, "bob")
        sim.add_member(by_delta, bob)
        await eventually(lambda: named(NAMES[1], bob), "groups delta: the group under its displayName")

        sim.add_member(by_user, alice)
        sim.update_user(alice, display_name="Alice Ærø")
        await eventually(lambda: named(NAMES[2], alice), "user notification: the group under its displayName")

        carol = add_user(sim, "carol")
        sim.add_member(by_sync, carol)
        await stack.engine.full_sync(cause="reactor sync")
        await eventually(lambda: named(NAMES[3], carol), "reactor sync: the group under its displayName")

        groups = await stack.askcody_groups()
        assert set(NAMES) <= set(groups)
        assert not [g for g in groups if _is_guid(g)], groups


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
