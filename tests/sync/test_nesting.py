"""Nested groups as pure data: which configured groups a user's direct groups give, by which path."""

from __future__ import annotations

from reactor.config import GroupMapping, Settings
from reactor.sync.nesting import Nesting, configured_paths, depths

FM = "c0ffee00-0000-4000-8000-000000000001"
RECEPTION = "c0ffee00-0000-4000-8000-000000000002"
CPH, NIGHT, WEST, EAST, SHARED = (f"c0ffee00-0000-4000-8000-0000000001{i:02d}" for i in range(5))


def settings(*, reception_nested: bool = True) -> Settings:
    return Settings(groups=(GroupMapping(FM), GroupMapping(RECEPTION, grants="reception", nested=reception_nested)))


def nesting(*edges: tuple[str, str]) -> Nesting:
    out = Nesting()
    for parent, child in edges:
        out.add(parent, [child], [])
    return out


def test_paths_at_any_depth() -> None:
    scope = nesting((FM, CPH), (CPH, NIGHT)).scope(settings())
    assert configured_paths({NIGHT}, scope) == {FM: (FM, CPH, NIGHT)}
    assert configured_paths({FM}, scope) == {FM: (FM,)}
    assert configured_paths({"c0ffee00-0000-4000-8000-0000000009ff"}, scope) == {}


def test_a_cycle_ends_and_the_shortest_path_wins_in_a_diamond() -> None:
    n = nesting((FM, WEST), (FM, EAST), (WEST, SHARED), (EAST, SHARED), (SHARED, FM), (SHARED, WEST))
    scope = n.scope(settings())
    assert configured_paths({SHARED}, scope) == {FM: (FM, WEST, SHARED)}  # a tie: group id order
    assert n.tracked(settings()) == {FM, RECEPTION, WEST, EAST, SHARED}
    n.add(FM, [], [WEST])
    assert configured_paths({SHARED}, n.scope(settings())) == {FM: (FM, EAST, SHARED)}
    n.add(FM, [], [EAST])
    assert configured_paths({SHARED}, n.scope(settings())) == {}


def test_nested_false_keeps_direct_members_only() -> None:
    n = nesting((RECEPTION, CPH))
    flat = n.scope(settings(reception_nested=False))
    assert configured_paths({CPH}, flat) == {}
    assert configured_paths({RECEPTION}, flat) == {RECEPTION: (RECEPTION,)}
    assert n.tracked(settings(reception_nested=False)) == {FM, RECEPTION}


def test_a_flat_group_nested_in_a_nested_one_passes_its_members_up_only() -> None:
    n = nesting((FM, RECEPTION), (RECEPTION, CPH))
    scope = n.scope(settings(reception_nested=False))
    assert configured_paths({CPH}, scope) == {FM: (FM, RECEPTION, CPH)}
    assert configured_paths({RECEPTION}, scope) == {RECEPTION: (RECEPTION,), FM: (FM, RECEPTION)}


def test_a_deleted_group_leaves_its_parents() -> None:
    n = nesting((FM, CPH), (CPH, NIGHT))
    n.forget(CPH)
    assert n.tracked(settings()) == {FM, RECEPTION}


def test_depths_and_round_trip() -> None:
    n = nesting((FM, CPH), (CPH, NIGHT), (FM, WEST))
    n.delta_ids = frozenset({CPH, NIGHT, WEST})
    assert depths(n.scope(settings())) == {FM: (3, 2), RECEPTION: (0, 0)}
    again = Nesting.loads(n.dumps())
    assert (again.edges, again.delta_ids) == (n.edges, n.delta_ids)
    assert Nesting.loads(None).edges == {}
