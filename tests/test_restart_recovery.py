"""Every notification acknowledged with 202 is handled, even when the reactor is killed with SIGKILL
(on each store: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson

from reactor.store import SubscriptionRecord
from tests.support.eventually import eventually
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port
from tests.support.stores import StoreFactory

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "restart-test-client-state-0123456789"


def notification(user: str) -> dict[str, object]:
    return {
        "subscriptionId": SUB, "clientState": STATE, "changeType": "updated", "tenantId": TENANT,
        "resource": f"Users/{user}", "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": user},
    }


def recorded(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out: set[str] = set()
    for line in path.read_bytes().splitlines():
        if line.strip():
            out.update(orjson.loads(line)["object_ids"])
    return out


async def test_sigkill_after_a_burst_loses_no_acknowledged_notification(
    tmp_path: Path, store_url: str, make_store: StoreFactory
) -> None:
    store = await make_store()
    await store.save_subscription(
        SubscriptionRecord(
            SUB, "users", "updated,deleted", "https://x/n", "https://x/l", STATE, time.time() + 86400, time.time()
        )
    )
    await store.close()
    port = free_port()
    config = write_config(
        tmp_path / "reactor.toml",
        {
            "server": {"port": port},
            "graph": {"tenant_id": TENANT},
            # On PostgreSQL the killed process's entries are taken over once its heartbeat expires.
            "store": {"url": store_url, "lease_seconds": 3},
            "subscriptions": {"enabled": False},
        },
    )
    record = tmp_path / "handled.jsonl"
    proc = ReactorProcess(config, port, "--record", str(record)).start()
    acked: set[str] = set()
    try:
        async with httpx.AsyncClient(timeout=10) as client:

            async def send(i: int) -> None:
                for j in range(10):
                    uid = f"{i:08d}-0000-4000-8000-{j:012d}"
                    r = await client.post(f"{proc.url}/notifications", json={"value": [notification(uid)]})
                    if r.status_code == 202:
                        acked.add(uid)

            await asyncio.gather(*(send(i) for i in range(30)))
    finally:
        proc.kill()
    assert len(acked) == 300
    handled_before = recorded(record)

    proc2 = ReactorProcess(config, port, "--record", str(record)).start()
    store = await make_store()
    try:
        await eventually(lambda: acked <= recorded(record), timeout=30)

        async def journal_empty() -> bool:
            return (await store.backlog())[0] == 0

        # Everything acknowledged is done and out of the journal (the killed process's part too).
        await eventually(journal_empty, "journal empty", timeout=30)
    finally:
        assert proc2.terminate() == 0
        count, _ = await store.backlog()
        await store.close()
    assert count == 0
    assert acked <= recorded(record)
    assert len(handled_before) <= len(acked)
