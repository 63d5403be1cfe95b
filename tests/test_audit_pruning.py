"""The audit pruning the service runs (:class:`reactor.wiring.AuditPruning`): at start and then once a
period, the rows older than the retention are removed; the others stay. On every store (SQLite and
PostgreSQL), with an injected clock standing for the days that pass."""

from __future__ import annotations

from reactor.store import AuditRow, Store
from reactor.wiring import DAY, AuditPruning
from tests.support.eventually import eventually

NOW = 1_780_000_000.0
GUEST = "7c1f0e2a-51b4-4c1e-9d0a-2f6e8b3c4d5e"
GUEST_UPN = "anna.o'brien_fabrikam.com#EXT#@contoso.onmicrosoft.com"


def row(at: float, operation: str) -> AuditRow:
    return AuditRow(at, GUEST, GUEST_UPN, "update_user", operation, "reconcile", "periodic reconcile")


async def test_rows_older_than_the_retention_are_removed_at_start_and_each_period(any_store: Store) -> None:
    store = any_store
    now = [NOW]
    pruning = AuditPruning(store, retention_days=90, interval=0.05, clock=lambda: now[0])
    try:
        await store.record_audit([row(NOW - 91 * DAY, "update user: display_name=\"Anna O'Brien\""),
                                  row(NOW - 89 * DAY, "disable user"), row(NOW - DAY, "enable user")])
        await pruning.start()
        assert [r.operation for r in await store.audit()] == ["disable user", "enable user"], "pruned at start"

        now[0] = NOW + 2 * DAY  # two days later, the next period's pruning takes the next row

        async def pruned() -> bool:
            return [r.operation for r in await store.audit()] == ["enable user"]

        await eventually(pruned, "the periodic pruning of the row now 91 days old", timeout=5)
    finally:
        await pruning.stop()
