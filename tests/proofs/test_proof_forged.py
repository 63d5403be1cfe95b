"""Forged notifications have no effect at all: a wrong or swapped clientState, a foreign tenant, an
unknown subscription, a missing field, on ``/notifications`` and on ``/lifecycle``. Nothing is
journaled, Graph is not asked, the subscriptions stay as they are, and AskCody does not change,
although a real change is waiting that any accepted notification about that user would apply.
A genuine notification sent last (the positive control) does apply it."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.proofs.proof_rig import Rig, process_rig
from tests.support.expected import read_askcody

FOREIGN_TENANT = "99999999-8888-7777-6666-555555555555"
UNKNOWN_SUB = "0badc0de-0000-4000-8000-000000000000"


def metric(text: str, name: str) -> float:
    """The sum of every sample of a counter in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{name}(_total)?(\{{|\s)", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def change(rig: Rig, sub: dict[str, Any], user_id: str, **over: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": sub["id"], "clientState": sub["clientState"], "changeType": "updated",
        "tenantId": rig.sim.tenant_id, "resource": f"Users/{user_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user_id}", "id": user_id},
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
    }
    for key, value in over.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return item


def lifecycle(rig: Rig, sub: dict[str, Any], event: str, **over: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": sub["id"], "clientState": sub["clientState"], "tenantId": rig.sim.tenant_id,
        "lifecycleEvent": event, "subscriptionExpirationDateTime": sub["expirationDateTime"],
    }
    item.update(over)
    return item


async def test_forged_notifications_change_nothing(tmp_path: Path) -> None:
    async with process_rig(tmp_path, seed=7) as rig:
        await rig.sim.wait_idle()
        subs = {s["resource"].strip("/").lower(): s for s in rig.sim.subscriptions.values()}
        users, groups = subs["users"], subs["groups"]
        uid = sorted(rig.oracle.expected(rig.sim).present)[0]
        # A real change whose notification Graph loses: any accepted notification about uid applies it.
        rig.sim.faults.drop_rate = 1.0
        rig.sim.update_user(uid, display_name="Changed while nobody was told")
        rig.oracle.observe(rig.sim)
        await rig.sim.wait_idle()

        before = (await read_askcody(rig.scim_url, rig.scim_token)).fingerprint()
        seq = rig.journal_seq()
        calls = Counter(rig.sim.calls)
        sub_ids = set(rig.sim.subscriptions)
        forged = [
            change(rig, users, uid, clientState="not-the-client-state"),
            change(rig, users, uid, clientState=groups["clientState"]),  # another subscription's secret
            change(rig, users, uid, clientState=users["clientState"][:-1]),
            change(rig, users, uid, clientState=None),
            change(rig, users, uid, tenantId=FOREIGN_TENANT),
            change(rig, users, uid, tenantId=None),
            change(rig, users, uid, subscriptionId=UNKNOWN_SUB),
            change(rig, users, uid, subscriptionId=UNKNOWN_SUB, clientState="anything"),
            change(rig, users, uid, subscriptionId=None),
        ]
        forged_lifecycle = [
            lifecycle(rig, users, "subscriptionRemoved", clientState="not-the-client-state"),
            lifecycle(rig, groups, "missed", tenantId=FOREIGN_TENANT),
            lifecycle(rig, users, "reauthorizationRequired", subscriptionId=UNKNOWN_SUB),
            lifecycle(rig, groups, "subscriptionRemoved", clientState=users["clientState"]),
        ]
        async with httpx.AsyncClient(base_url=rig.reactor.url, timeout=10) as client:
            metrics_before = (await client.get(rig.reactor.admin_url + "/metrics")).text
            for item in forged:
                assert (await client.post("/notifications", json={"value": [item]})).status_code == 202
            assert (await client.post("/notifications", json={"value": forged})).status_code == 202
            for item in forged_lifecycle:
                assert (await client.post("/lifecycle", json={"value": [item]})).status_code == 202
            assert (await client.post("/lifecycle", json={"value": forged_lifecycle})).status_code == 202
            # Anything accepted would be journaled at once (before the 202) and applied within
            # milliseconds; give it ample time to show.
            await asyncio.sleep(1.5)
            metrics_after = (await client.get(rig.reactor.admin_url + "/metrics")).text

            assert rig.journal_seq() == seq, "a forged item was journaled"
            assert (await read_askcody(rig.scim_url, rig.scim_token)).fingerprint() == before
            assert Counter(rig.sim.calls) == calls, "a forged item made the reactor ask Graph"
            assert set(rig.sim.subscriptions) == sub_ids, "a forged lifecycle event touched the subscriptions"
            rejected = metric(metrics_after, "reactor_notifications_rejected") - metric(
                metrics_before, "reactor_notifications_rejected"
            )
            assert rejected == 2 * (len(forged) + len(forged_lifecycle))
            assert metric(metrics_after, "reactor_notifications_accepted") == metric(
                metrics_before, "reactor_notifications_accepted"
            )

            # The positive control: the same item, genuine, is journaled and applies the waiting change.
            assert (await client.post("/notifications", json={"value": [change(rig, users, uid)]})).status_code == 202
        await rig.converge(20)
        assert rig.journal_seq() > seq
