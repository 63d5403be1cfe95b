"""The public endpoints under fuzzing, over real HTTP (the short run; ``python -m bench.fuzz`` is the
long one): generated requests to ``POST /notifications``, ``POST /lifecycle`` (with and without the
``?validationToken=`` handshake) and ``GET /healthz`` on one keep-alive connection, against
``create_app(Service(...))`` under uvicorn with the SQLite store and a handler that records what it
is given. See tests/support/fuzzing.py for the generators and what each request must cause."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.fuzzing import Ledger, alive, effect_violations, fuzz, fuzz_target, leftover_journal, wait_settled

EXAMPLES = 2000


def test_fuzzed_requests_get_contract_answers_and_only_valid_items_are_journaled(tmp_path: Path) -> None:
    ledger = Ledger()
    with fuzz_target(tmp_path) as target, httpx.Client(timeout=30) as client:
        fuzz(client, target.url, ledger, EXAMPLES)
        assert alive(client, target.url), "the server stopped answering /healthz"
        wait_settled(target, ledger)
        effects = effect_violations(ledger, target.recorder)
    leftovers = set(leftover_journal(target.db)) - set(ledger.owed)

    assert ledger.sent >= EXAMPLES
    failures = [f"{n} x {problem}" for problem, n in ledger.problems.most_common()] + effects
    if leftovers:
        failures.append(f"journal entries left from invalid items: {sorted(leftovers)[:5]}")
    if failures:
        pytest.fail("\n".join(["the contract does not hold:", *failures, "first requests outside it:", *ledger.violations[:3]]))
    # The run exercised what it is for: valid items accepted, and each kind of refusal.
    assert sum(ledger.owed.values()) > 100
    assert {202, 400, 413, 200} <= set(ledger.statuses)
