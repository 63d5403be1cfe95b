from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx

from graphsim import GraphSimulator

TENANT = "99999999-8888-7777-6666-555555555555"
USER = "aaaaaaaa-0000-0000-0000-000000000001"
GROUP = "bbbbbbbb-0000-0000-0000-000000000001"


async def test_control_api_drives_the_tenant(sim: GraphSimulator, graph: httpx.AsyncClient, base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url.removesuffix("/v1.0") + "/_sim", verify=False) as control:
        extension_attributes = {"extensionAttribute2": "v2"}
        created = await control.post(
            "/users",
            json={"userPrincipalName": "c@x.test", "display_name": "C", "onPremisesExtensionAttributes": extension_attributes},
        )
        assert created.status_code == 201
        uid = created.json()["id"]
        assert (await control.patch(f"/users/{uid}", json={"employee_org_data": {"costCenter": "CC7"}})).status_code == 200
        gid = (await control.post("/groups", json={"displayName": "Ops"})).json()["id"]
        assert (await control.post(f"/groups/{gid}/members", json={"id": uid})).status_code == 204
        assert sim.members(gid) == [uid]
        assert (await control.delete(f"/groups/{gid}/members/{uid}")).status_code == 204
        assert (await control.post(f"/users/{uid}/softDelete")).status_code == 200
        assert (await graph.get(f"/users/{uid}")).status_code == 404
        assert (await control.post(f"/users/{uid}/restore")).status_code == 200
        user = (await graph.get(f"/users/{uid}", params={"$select": "employeeOrgData,onPremisesExtensionAttributes"})).json()
        assert user["employeeOrgData"]["costCenter"] == "CC7"
        assert user["onPremisesExtensionAttributes"]["extensionAttribute2"] == "v2"
        assert (await control.post("/users/nope/softDelete")).status_code == 404
        assert (await control.post("/users", json={"display_name": "no upn"})).status_code == 400

        knobs = await control.post("/faults", json={"drop_rate": 0.5, "throttle": {"count": 1, "retry_after": 2}})
        assert knobs.json()["drop_rate"] == 0.5
        assert sim.faults.drop_rate == 0.5
        assert (await graph.get(f"/users/{uid}")).status_code == 429
        assert (await control.post("/faults", json={"bogus": 1})).status_code == 400
        calls = (await control.get("/calls")).json()
        assert calls["get_user"] == 3
        assert (await control.delete(f"/groups/{gid}")).status_code == 204
        assert (await control.post("/idle", params={"timeout": "1"})).status_code == 200


async def test_runs_as_a_process(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "users": [{"id": USER, "user_principal_name": "s@x.test", "display_name": "Seeded"}],
                "groups": [{"id": GROUP, "display_name": "Seeded group", "members": [USER]}],
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "graphsim", "--port", "0", "--tenant-id", TENANT, "--token", "T",
        "--seed-file", str(seed),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1.0")
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer T"}, verify=False) as graph:
            user = (await graph.get(f"/users/{USER}", params={"$select": "displayName"})).json()
            assert user["displayName"] == "Seeded"
            members = (await graph.get(f"/groups/{GROUP}/members", params={"$select": "id"})).json()["value"]
            assert [m["id"] for m in members] == [USER]
            root = base_url.removesuffix("/v1.0")
            created = await graph.post(f"{root}/_sim/users", json={"user_principal_name": "n@x.test"})
            assert created.status_code == 201
            assert (await graph.post(f"{root}/_sim/clock", json={"advance_seconds": 3600})).status_code == 200
            assert (await graph.get(f"{root}/_sim/calls")).json()["get_user"] == 1
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0, (await process.stderr.read()).decode() if process.stderr else ""
