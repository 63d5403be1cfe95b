"""Model-based convergence: whatever Entra does, with notifications duplicated, reordered, delayed
and dropped and with AskCody failing transiently, once the reactor is quiet (queue empty, a reconcile
run after the last change) scim2-server holds exactly what the oracle computes from the tenant.

Hypothesis draws the cases (operations, pauses, SCIM 503 bursts, lost SCIM answers, fault rates);
``bench/convergence.py`` runs many more of them from seeds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reactor import log
from tests.proofs.entra_ops import KINDS, Op
from tests.proofs.model_case import Case, LoseAnswer, NotificationFaults, Pause, ScimBurst, Step, capped, run_case

ops = st.builds(Op, st.sampled_from(sorted(KINDS)), st.integers(0, 999), st.integers(0, 999))
steps: st.SearchStrategy[Step] = st.one_of(
    ops,
    ops,
    ops,
    st.builds(Pause, st.sampled_from((0.02, 0.1, 0.3))),
    st.builds(ScimBurst, st.integers(7, 12)),
    st.just(LoseAnswer()),
)
faults = st.builds(
    NotificationFaults,
    drop_rate=st.sampled_from((0.0, 0.3)),
    duplicate_rate=st.sampled_from((0.0, 0.5)),
    reorder=st.booleans(),
    delay_seconds=st.sampled_from((0.0, 0.2)),
    scim_error_rate=st.sampled_from((0.0, 0.1)),
)
cases = st.builds(
    Case,
    users=st.integers(1, 6),
    steps=st.lists(steps, min_size=1, max_size=30).map(capped),
    faults=faults,
    seed=st.integers(0, 2**31 - 1),
)


@settings(
    max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example is a whole stack; a failure shows its log
)
@given(case=cases)
def test_askcody_converges_to_the_oracle_under_faults(case: Case, tmp_path_factory: object) -> None:
    log.configure("warning")
    workdir = Path(tmp_path_factory.mktemp("model"))  # type: ignore[attr-defined]
    result = asyncio.run(run_case(case, workdir))
    assert result.problems == [], "\n".join(result.log)
    assert result.dead_letters == 0, "\n".join(result.log)
