"""``reactor sync`` as an operator runs it: a subprocess with a TOML configuration, against the Graph
simulator and scim2-server served by the test. ``--dry-run`` prints the plan (text, or one JSON
object with ``--json``) and leaves AskCody untouched; without it the same plan is applied. Progress
goes to stderr: plain lines into a pipe, rich bars on a terminal, nothing with ``--json``."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphsim import GraphSimulator, running_simulator
from tests.support.reactor_proc import write_config
from tests.support.scim_server import ScimServer, scim_server
from tests.support.tenant_names import RECEPTION, ROLE


@dataclass
class Setup:
    sim: GraphSimulator
    scim: ScimServer
    config: Path
    groups: dict[str, str]
    users: dict[str, str]
    cwd: Path

    async def reactor(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run ``python -m reactor ARGS --config FILE``; its exit code, stdout and stderr."""
        proc = await self._start(args, env, asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def reactor_on_terminal(self, *args: str) -> tuple[int, str, str]:
        """Like :meth:`reactor`, with stderr a pseudo-terminal (stdout still a pipe): what it drew there."""
        terminal, stderr = pty.openpty()
        try:
            proc = await self._start(args, {"TERM": "xterm-256color", "COLUMNS": "120"}, stderr)
        finally:
            os.close(stderr)
        assert proc.stdout is not None
        try:
            drawn, out = await asyncio.wait_for(
                asyncio.gather(asyncio.to_thread(_read_terminal, terminal, time.monotonic() + 60), proc.stdout.read()),
                60,
            )
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            os.close(terminal)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), drawn.decode(errors="replace")

    async def _start(self, args: tuple[str, ...], env: dict[str, str] | None, stderr: int) -> asyncio.subprocess.Process:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
        environ.update(env or {})
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reactor", *args, "--config", str(self.config),
            cwd=self.cwd, env=environ, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )

    async def askcody(self) -> dict[str, Any]:
        """Everything scim2-server holds, as it answers over HTTP."""
        async with httpx.AsyncClient(base_url=self.scim.url, headers={"Authorization": f"Bearer {self.scim.token}"}) as c:
            users = (await c.get("/Users", params={"count": "1000"})).json().get("Resources", [])
            groups = (await c.get("/Groups", params={"count": "1000"})).json().get("Resources", [])
        return {"users": sorted(users, key=lambda u: u["id"]), "groups": sorted(groups, key=lambda g: g["id"])}

    async def memberships(self) -> dict[str, set[str]]:
        """AskCody group name → the userNames of its members."""
        state = await self.askcody()
        names = {u["id"]: u["userName"] for u in state["users"]}
        return {g["displayName"]: {names[m["value"]] for m in g.get("members") or []} for g in state["groups"]}

    async def user(self, name: str) -> dict[str, Any]:
        found = [u for u in (await self.askcody())["users"] if u["userName"] == f"{name}@contoso.com"]
        assert len(found) == 1
        user: dict[str, Any] = found[0]
        return user


def _read_terminal(fd: int, deadline: float) -> bytes:
    """Everything written to the pseudo-terminal whose other end is ``fd``, until every writer closed it."""
    drawn = b""
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the last writer closed its end
            break
        if not chunk:
            break
        drawn += chunk
    return drawn


def _add(sim: GraphSimulator, name: str) -> str:
    return sim.add_user(
        user_principal_name=f"{name}@contoso.com", display_name=name.title(), given_name=name.title(),
        surname="Tester", mail=f"{name}@contoso.com", employee_org_data={"costCenter": "CC-100"},
    )


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sim = GraphSimulator(token="sim-token")
    groups = {ROLE: sim.add_group(display_name="FM staff"), RECEPTION: sim.add_group(display_name="Reception CPH")}
    users = {n: _add(sim, n) for n in ("alice", "bob", "carol", "dave")}
    sim.add_member(groups[ROLE], users["alice"])
    sim.add_member(groups[ROLE], users["bob"])
    sim.add_member(groups[RECEPTION], users["bob"])
    sim.add_member(groups[RECEPTION], users["carol"])
    async with running_simulator(sim) as graph_url, scim_server() as scim:
        config = write_config(
            tmp_path / "reactor.toml",
            {
                "graph": {"tenant_id": sim.tenant_id, "base_url": graph_url, "token": sim.token or ""},
                "askcody": {"scim_url": scim.url, "token": scim.token, "max_requests_per_second": 1000},
                "store": {"url": f"sqlite:///{tmp_path / 'reactor.db'}"},
            },
            [
                {"id": groups[ROLE], "askcody_group": ROLE, "grants": "role"},
                {"id": groups[RECEPTION], "askcody_group": RECEPTION, "grants": "reception"},
            ],
        )
        yield Setup(sim, scim, config, groups, users, tmp_path)


def lines_about(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


async def test_dry_run_prints_the_plan_and_changes_nothing_then_sync_applies_it(setup: Setup) -> None:
    s, u, g = setup, setup.users, setup.groups
    empty = await s.askcody()
    assert empty == {"users": [], "groups": []}

    code, out, err = await s.reactor("sync", "--dry-run")
    assert code == 0, err
    for name in ("alice", "bob", "carol"):
        assert lines_about(out, "create", f"{name}@contoso.com"), out
    assert not lines_about(out, "dave@contoso.com")
    # Each AskCody group is counted once in the summary, however many users' plans need it.
    assert out.splitlines()[0] == "Plan (dry run, nothing changed): 9 operations for 3 users (4 add, 3 create, 2 ensure)", out
    for name, group in (("alice", ROLE), ("bob", ROLE), ("bob", RECEPTION), ("carol", RECEPTION)):
        assert lines_about(out, "add", u[name], g[group]), out
    assert await s.askcody() == empty

    code, out, err = await s.reactor("sync", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert isinstance(plan, dict)
    ops = plan["operations"]
    assert sorted(o["entra_id"] for o in ops if o["op"] == "create_user") == sorted(u[n] for n in ("alice", "bob", "carol"))
    adds = {(o["entra_user_id"], o["entra_group_id"]) for o in ops if o["op"] == "add_member"}
    assert adds == {(u["alice"], g[ROLE]), (u["bob"], g[ROLE]), (u["bob"], g[RECEPTION]), (u["carol"], g[RECEPTION])}
    assert await s.askcody() == empty

    code, out, err = await s.reactor("sync")
    assert code == 0, err
    assert await s.memberships() == {
        ROLE: {"alice@contoso.com", "bob@contoso.com"},
        RECEPTION: {"bob@contoso.com", "carol@contoso.com"},
    }
    code, out, err = await s.reactor("sync", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["operations"] == []  # in line: nothing left to do


async def test_dry_run_after_changes_lists_updates_disables_deletes_and_removals(setup: Setup) -> None:
    s, u, g = setup, setup.users, setup.groups
    code, _, err = await s.reactor("sync")
    assert code == 0, err

    s.sim.update_user(u["alice"], display_name="Alice Renamed")  # update
    s.sim.remove_member(g[ROLE], u["bob"])  # membership removal, bob stays in Reception
    s.sim.remove_member(g[RECEPTION], u["carol"])  # carol leaves her last group: disable (or delete)
    s.sim.add_member(g[ROLE], u["dave"])  # create and add
    before = await s.askcody()

    code, out, err = await s.reactor("sync", "--dry-run")
    assert code == 0, err
    assert lines_about(out, "update", u["alice"], "Alice Renamed"), out
    assert lines_about(out, "remove", u["bob"], g[ROLE]), out
    assert lines_about(out, "remove", u["carol"], g[RECEPTION]), out
    assert lines_about(out, "disable", u["carol"]), out
    assert lines_about(out, "create", "dave@contoso.com"), out
    assert lines_about(out, "add", u["dave"], g[ROLE]), out
    assert not lines_about(out, "delete")
    assert await s.askcody() == before

    code, out, err = await s.reactor("sync", "--dry-run", "--json", env={"REACTOR_ASKCODY_DEPROVISION": "delete"})
    assert code == 0, err
    ops = json.loads(out)["operations"]
    assert [o["entra_id"] for o in ops if o["op"] == "delete_user"] == [u["carol"]]
    assert not [o for o in ops if o["op"] == "set_active"]
    assert {o["entra_id"] for o in ops if o["op"] == "update_user"} == {u["alice"]}
    assert await s.askcody() == before

    code, out, err = await s.reactor("sync")
    assert code == 0, err
    assert await s.memberships() == {
        ROLE: {"alice@contoso.com", "dave@contoso.com"},
        RECEPTION: {"bob@contoso.com"},
    }
    assert (await s.user("alice"))["displayName"] == "Alice Renamed"
    assert (await s.user("carol"))["active"] is False
    assert (await s.user("dave"))["active"] is True


PROGRESS_LINE = re.compile(r"^sync: (?P<phase>[a-zA-Z ]+?) (?P<done>\d+)(?:/(?P<total>\d+))? (?P<unit>users|groups)\b")


def progress_lines(err: str) -> dict[str, list[tuple[int, int | None]]]:
    """Phase → the (done, total) of each plain progress line about it, in order."""
    out: dict[str, list[tuple[int, int | None]]] = {}
    for line in err.splitlines():
        m = PROGRESS_LINE.match(line)
        if m:
            total = int(m["total"]) if m["total"] else None
            out.setdefault(m["phase"], []).append((int(m["done"]), total))
    return out


async def test_sync_into_a_pipe_writes_plain_progress_lines_on_stderr_and_leaves_stdout_as_it_was(setup: Setup) -> None:
    s = setup
    code, out, err = await s.reactor("sync", "--dry-run")
    assert code == 0, err
    phases = progress_lines(err)
    assert phases["reading groups"][-1] == (2, 2), err
    assert phases["planning"][-1] == (3, 3), err  # alice, bob and carol are in scope
    assert "applying" not in phases, err
    assert err.splitlines()[-1].startswith("sync: done in "), err
    assert out.startswith("Plan (dry run, nothing changed): "), out

    code, out, err = await s.reactor("sync")
    assert code == 0, err
    phases = progress_lines(err)
    assert phases["planning"][-1] == (3, 3), err
    assert phases["applying"][-1] == (3, 3), err
    assert re.search(r"^sync: applying 3/3 users, \d+\.\d/s$", err, re.M), err
    assert err.splitlines()[-1].startswith("sync: done in "), err
    assert all(line.startswith("sync: ") for line in err.splitlines()), err
    # stdout is the plan applied, as before: a summary line, then each user and its operations.
    lines = out.splitlines()
    assert lines[0].startswith("Applied: ") and "for 3 users" in lines[0], out
    assert all(line.startswith("  ") for line in lines[1:]), out
    assert "sync:" not in out and "\x1b" not in out


async def test_sync_on_a_terminal_draws_progress_bars_with_counts_and_rates(setup: Setup) -> None:
    code, out, drawn = await setup.reactor_on_terminal("sync")
    assert code == 0, drawn
    assert "\x1b[" in drawn and "━" in drawn, drawn  # rich's bars, not plain lines
    assert not re.search(r"^sync: applying", drawn, re.M), drawn
    assert "applying" in drawn and "3/3 users" in drawn, drawn
    assert re.search(r"\d+\.\d/s", drawn), drawn
    assert "sync: done in " in drawn, drawn
    assert out.splitlines()[0].startswith("Applied: "), out  # stdout, a pipe, has the plan only
    assert "\x1b" not in out


async def test_sync_json_prints_one_json_document_and_no_progress_even_on_a_terminal(setup: Setup) -> None:
    code, out, drawn = await setup.reactor_on_terminal("sync", "--dry-run", "--json")
    assert code == 0 and drawn == "", drawn
    assert json.loads(out)["users"] == 3, out
    for args in (("sync", "--dry-run", "--json"), ("sync", "--json")):
        code, out, err = await setup.reactor(*args)
        assert code == 0, err
        assert err == "", err
        document = json.loads(out)
        assert isinstance(document, dict) and document["users"] == 3, out
