"""Faults against ``reactor serve`` as a real process: after each, scim2-server holds exactly what the
oracle computes from the simulated tenant (no change lost), with no dead letter.

The simulator and scim2-server run in the test process; the reactor is a subprocess subscribed to
the simulator, so every change reaches it as a Graph change notification over HTTP. The longer
variants of these runs are ``bench/faults.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.proofs.scenarios import dropped_notifications, kill9, scim_outage, throttle_storm

OUTAGE_SECONDS = 30.0
"""The SCIM outage of the proof. Longer than one SCIM request's whole retry budget in the reactor
(6 attempts, backoff 0.5+1+2+4+8 s plus up to 1 s jitter each: about 20 s), so whole units of work
fail and are run again by the dispatcher with its own backoff, and several periodic reconciles
(every 5 s here) fall inside it. Beyond that a longer outage only repeats the same steps with longer
waits: ``bench/faults.py`` runs 5 minutes."""


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kill_9_during_a_burst_loses_no_change(tmp_path: Path, seed: int) -> None:
    """SIGKILL twice at random moments of 30 changes (changes keep coming while it is dead), restart
    on the same store: Graph's redeliveries, the journal and the start-up reconcile leave AskCody
    exactly as Entra says."""
    result = await kill9(tmp_path, seed=seed, ops=30, kills=2, timeout=60)
    assert result.lost == 0, result.details
    assert result.dead_letters == 0
    assert result.seconds_to_converge is not None


async def test_scim_outage_converges_after_it_ends_without_dead_letters(tmp_path: Path) -> None:
    """AskCody refuses connections for 30 s while Entra changes: nothing is dead-lettered, and AskCody
    matches Entra soon after it is back."""
    result = await scim_outage(tmp_path, seed=4, outage_seconds=OUTAGE_SECONDS, ops=15, timeout=90)
    assert result.dead_letters == 0
    assert result.lost == 0, result.details
    assert result.details["pending_when_back"] > 0, "the outage must have held changes back"
    assert result.seconds_to_converge is not None


async def test_thirty_percent_of_notifications_dropped_converges_within_one_reconcile_interval(tmp_path: Path) -> None:
    interval = 5.0
    result = await dropped_notifications(tmp_path, seed=5, drop_rate=0.3, interval=interval, ops=40)
    assert result.details["dropped"] > 0
    assert result.lost == 0, result.details
    assert result.seconds_to_converge is not None
    # The next periodic reconcile after the last change repairs everything (plus its own run time).
    assert result.seconds_to_converge <= interval + 3.0, result.seconds_to_converge


async def test_graph_429_storms_are_honoured_and_converge(tmp_path: Path) -> None:
    result = await throttle_storm(tmp_path, seed=6, storm=25, retry_after=1.0, ops=25, timeout=60)
    assert result.details["throttled"] == 50, "both storms must have been met by the reactor"
    assert result.details["early_retries"] == [], "a request was repeated before its Retry-After passed"
    assert result.lost == 0, result.details
    assert result.dead_letters == 0
