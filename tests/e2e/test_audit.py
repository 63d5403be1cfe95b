"""``reactor audit`` as an operator runs it, against what a live stack applied: a person provisioned
through a group notification, their cost center changed, then removed from their group. The audit
names each SCIM operation with its cause and journal entries, in order; rows older than
``store.audit_retention_days`` are removed when the service starts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from graphsim import GraphSimulator
from reactor.demo.stack import Stack, local_stack
from reactor.store import AuditRow, SQLiteStore
from tests.e2e.helpers import ENTERPRISE, add_user, idle, member_of, ready
from tests.support.eventually import eventually
from tests.support.reactor_proc import write_config
from tests.support.tenant_names import ROLE

UPN = "siobhan.o'connor@contoso.com"
DAY = 86_400.0


async def reactor_audit(store_path: Path, *args: str) -> tuple[int, str, str]:
    """``python -m reactor audit ARGS`` with a configuration naming the stack's SQLite store."""
    config = write_config(store_path.with_name("audit.toml"), {"store": {"url": f"sqlite:///{store_path}"}})
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reactor", "audit", *args, "--config", str(config),
        cwd=store_path.parent, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_audit_lists_the_operations_applied_for_a_user_with_their_causes_in_order(
    stack: Stack, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    await ready(stack)
    other = add_user(stack.sim, "zhang.wei", display_name="张伟")
    uid = stack.sim.add_user(user_principal_name=UPN, display_name="Siobhán O'Connor", given_name="Siobhán",
                             surname="O'Connor", mail="siobhan.oconnor@contoso.com",
                             employee_org_data={"costCenter": "CC-100"})
    for u in (other, uid):
        stack.sim.add_member(tenant_groups[ROLE], u)
    await eventually(lambda: member_of(stack, ROLE, uid), "the user provisioned through the group notification")
    await idle(stack)

    stack.sim.update_user(uid, employee_org_data={"costCenter": "CC-4711"})

    async def cost_center_changed() -> bool:
        user = await stack.askcody_user(uid)
        return user is not None and user.get(ENTERPRISE, {}).get("costCenter") == "CC-4711"

    await eventually(cost_center_changed, "the new cost center in AskCody")
    await idle(stack)

    stack.sim.remove_member(tenant_groups[ROLE], uid)

    async def deprovisioned() -> bool:
        user = await stack.askcody_user(uid)
        return user is not None and user["active"] is False and not await member_of(stack, ROLE, uid)

    await eventually(deprovisioned, "the user out of the group and disabled")
    await idle(stack)

    code, out, err = await reactor_audit(tmp_path / "reactor.db", "--user", UPN.upper(), "--json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    assert [(r["op"], r["cause"], r["outcome"]) for r in rows] == [
        ("create_user", "groups delta", "applied"),
        ("add_member", "groups delta", "applied"),
        ("update_user", "notification", "applied"),
        ("remove_member", "groups delta", "applied"),
        ("set_active", "groups delta", "applied"),
    ], rows
    assert {(r["entra_id"], r["upn"], r["mail"]) for r in rows} == {(uid, UPN, "siobhan.oconnor@contoso.com")}
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert rows[0]["operation"].startswith(f"create user {UPN}"), rows[0]
    assert "cost_center='CC-4711'" in rows[2]["operation"], rows[2]
    assert rows[3]["operation"] == f"remove user {UPN} from group '{ROLE}'", rows[3]
    assert rows[4]["operation"].startswith(f"disable user {UPN}"), rows[4]
    assert all(r["journal_seqs"] for r in rows), "each operation names the journal entries behind it"
    assert rows[2]["reason"].startswith("1 notification(s)"), rows[2]
    assert "groups delta" in rows[3]["reason"], rows[3]

    by_id = json.loads((await reactor_audit(tmp_path / "reactor.db", "--user", uid, "--json"))[1])
    assert by_id == rows, "the object id finds the same rows as the UPN"
    since = rows[2]["time"]
    later = json.loads((await reactor_audit(tmp_path / "reactor.db", "--user", uid, "--since", since, "--json"))[1])
    assert [r["op"] for r in later][-2:] == ["remove_member", "set_active"]
    assert all(r["at"] >= rows[2]["at"] - 1 for r in later)

    code, table, err = await reactor_audit(tmp_path / "reactor.db", "--user", "siobhan.oconnor@contoso.com")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "USER", "CAUSE", "OUTCOME", "OPERATION"]
    assert len(lines) == 1 + len(rows) and all(UPN in line for line in lines[1:])
    assert "notification" in lines[3] and "update user" in lines[3]

    recent = [c for c in (await stack.service.status())["recent_changes"] if c["entra_id"] == uid]
    assert [c["what"] for c in recent] == [r["operation"] for r in reversed(rows)], "the status page reads the audit"


async def test_a_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await reactor_audit(tmp_path / "reactor.db", "--since", "last tuesday")
    assert code == 2 and "ISO 8601" in err


async def test_audit_rows_older_than_the_retention_are_removed_at_start(
    sim: GraphSimulator, tenant_groups: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "reactor.db"
    now = time.time()
    store = SQLiteStore(str(path))
    await store.open()
    try:
        def row(age_days: float, what: str) -> AuditRow:
            return AuditRow(now - age_days * DAY, "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e", "j.meier@contoso.com",
                            "update_user", what, "reconcile", "periodic reconcile", mail="j.meier@corp.contoso.local")

        await store.record_audit([row(31, "update user j.meier@contoso.com: display_name='Jürgen \"Jo\" Meier'"),
                                  row(29, "disable user j.meier@contoso.com (SCIM 7)")])
    finally:
        await store.close()

    async with local_stack(sim, {tenant_groups[ROLE]: (ROLE, "role")}, path, store={"audit_retention_days": 30}):
        code, out, err = await reactor_audit(path, "--user", "j.meier@corp.contoso.local", "--json")
    assert code == 0, err
    assert [r["operation"] for r in json.loads(out)] == ["disable user j.meier@contoso.com (SCIM 7)"]
