"""A clean stop is quick even when the remote services hang or refuse, and loses nothing.

Kubernetes gives a pod 30 s between SIGTERM and SIGKILL by default. With Graph and AskCody both
unreachable, the reactor has units of work sleeping between retries and a subscriptions job retrying
its creates; SIGTERM must still end the process with exit code 0 well inside that budget, and the
unfinished notifications must stay in the journal for the next start.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx

from tests.support.eventually import eventually
from tests.support.intake import subscribed
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "shutdown-client-state-0123456789abcdef"


def pending_users(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT object_id FROM journal WHERE kind = 'user'")}


async def test_sigterm_with_graph_and_askcody_unreachable_exits_0_within_the_grace_period(tmp_path: Path) -> None:
    db = await subscribed(tmp_path / "reactor.db", sub=SUB, state=STATE, lifetime=3600)
    port = free_port()
    config = write_config(
        tmp_path / "reactor.toml",
        {
            "server": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}", "log_level": "info"},
            "graph": {
                "tenant_id": TENANT, "base_url": f"http://127.0.0.1:{free_port()}/v1.0", "token": "graph-token",
                "client_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "client_secret": "graph-secret",
            },
            "askcody": {"scim_url": f"http://127.0.0.1:{free_port()}/v2", "token": "askcody-token"},
            "store": {"url": f"sqlite:///{db}"},
            # The defaults: up to 8 attempts within 10 minutes, so units sleep between retries.
            "sync": {"workers": 2},
            "subscriptions": {"enabled": True},
        },
        [{"id": "99999999-0000-0000-0000-000000000001", "askcody_group": "Facility Management", "grants": "role"}],
    )
    proc = ReactorProcess(config, port).start()
    try:
        users = [f"5a0e0000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3)]
        async with httpx.AsyncClient(timeout=10) as client:
            for user in users:
                item = {
                    "subscriptionId": SUB, "clientState": STATE, "changeType": "updated", "tenantId": TENANT,
                    "resource": f"Users/{user}", "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": user},
                }
                r = await client.post(f"{proc.url}/notifications", json={"value": [item]})
                assert r.status_code == 202
        # Every unit has met the unreachable Graph at least once: they are in their retries now.
        await eventually(lambda: proc.log.read_text().count('"event":"retrying"') >= 3, timeout=30)
        started = time.monotonic()
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.terminate, 40.0)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
    assert rc == 0, proc.log.read_text()[-3000:]
    assert elapsed < 20, f"the stop took {elapsed:.1f} s"
    assert pending_users(db) == set(users), "unfinished notifications must stay journaled for the next start"
