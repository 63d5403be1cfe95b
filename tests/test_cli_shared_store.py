"""The CLI verbs that read the store work against the shared PostgreSQL store from any machine: a
separate process with only ``REACTOR_STORE_URL`` set reads what the replicas wrote."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from reactor.store import AuditRow, PostgresStore

UPN = "zoë.o'connor@fabrikam.museum"
ENTRA_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


async def cli(store_url: str, *args: str) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    environ["REACTOR_STORE_URL"] = store_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reactor", *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_deadletters_and_audit_read_the_shared_store(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        letter = await store.add_dead_letter("user", ENTRA_ID, {"cause": "the handler failed"}, "PermanentError: 400",
                                             [{"at": time.time(), "error": "400"}])
        await store.record_audit([AuditRow(at=time.time(), entra_id=ENTRA_ID, upn=UPN, op="create_user",
                                           operation=f"create user {UPN}", cause="notification",
                                           reason="1 notification(s) (updated)")])
    finally:
        await store.close()
    code, out, err = await cli(postgres_url, "deadletters", "list", "--json")
    assert code == 0, err
    assert [(d["id"], d["object_id"]) for d in json.loads(out)] == [(letter, ENTRA_ID)]
    code, out, err = await cli(postgres_url, "audit", "--user", UPN.upper(), "--json")
    assert code == 0, err
    assert [r["operation"] for r in json.loads(out)] == [f"create user {UPN}"]
    assert "c0rrect" not in out + err, "no password in the output"
