"""Two ``reactor serve`` replicas on one PostgreSQL database, the leader killed with SIGKILL in the
middle of a burst of Entra changes: nothing is lost, no object is handled by both at once, and the
survivor leads within ``store.lease_seconds`` and goes on renewing and reconciling
(tests/support/failover.py; bench/failover.py prints the same figures)."""

from __future__ import annotations

from pathlib import Path

from tests.support.failover import run_failover

LEASE = 3.0


async def test_killing_the_leader_mid_burst_loses_nothing_and_the_survivor_takes_over(
    tmp_path: Path, postgres_url: str
) -> None:
    figures = await run_failover(tmp_path, postgres_url, changes=240, users=24, seed=11, lease=LEASE)
    assert figures.problems == [] and figures.lost == 0, figures.as_dict()
    assert figures.journal_left == 0, "every journal entry was done (the dead replica's too)"
    assert figures.overlaps == [], "no object was handled by both replicas at once"
    assert min(figures.served.values()) > 0, f"notifications reached both replicas: {figures.served}"
    assert min(figures.units_by_replica.values()) > 0, f"both replicas did work: {figures.units_by_replica}"
    assert figures.seconds_until_survivor_leads is not None
    # The lease runs out within LEASE of the last renewal; a little slack for a loaded CI machine.
    assert figures.seconds_until_survivor_leads <= LEASE + 1.5, figures.as_dict()
    assert figures.renewed_by_survivor, "the survivor recreated a subscription that Graph removed"
    assert figures.reconciled_by_survivor, "the survivor ran the leader's reconcile"
    assert figures.page_says_survivor_leads
    assert figures.dead_letters == 0


def test_the_overlap_check_finds_an_object_handled_by_both_replicas_at_once() -> None:
    from tests.support.failover import overlapping

    def run(kind: str, oid: str, start: float, end: float) -> dict[str, object]:
        return {"kind": kind, "object_ids": [oid], "started": start, "finished": end}

    runs = {
        "a": [run("user", "anna", 0.0, 10.0), run("group", "g1", 20.0, 21.0)],
        "b": [run("user", "anna", 10.5, 11.0), run("user", "bo", 1.0, 2.0), run("group", "g2", 20.5, 20.6)],
    }
    # anna: one after the other; bo: only b; groups: one round covers every group, so g1 and g2 collide.
    assert overlapping(runs) == ["('group', '*'): a 20.000-21.000 and b 20.500-20.600"]
    runs["b"].append(run("user", "anna", 9.0, 9.5))
    assert len(overlapping(runs)) == 2


async def test_a_rolling_restart_of_both_replicas_during_a_stream_of_changes_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    from tests.support.failover import run_rolling_restart

    figures = await run_rolling_restart(tmp_path, postgres_url, changes=160, users=20, seed=5, lease=LEASE)
    assert figures.problems == [] and figures.lost == 0, figures.as_dict()
    assert figures.journal_left == 0
    assert figures.overlaps == []
    assert figures.answers > 0
    assert figures.refused == [], "Graph saw a non-2xx only from a replica that was stopping"
