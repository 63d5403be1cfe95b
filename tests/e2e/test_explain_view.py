"""The status page's explain view, on the admin listener of a running reactor (Graph simulator and
scim2-server over real HTTP): the search form on ``/``, ``/explain?user=…`` as a page and
``/explain.json?user=…`` as the very document of ``reactor explain --json``; behind the admin token
when one is set, absent from the public listener, every value of the tenant escaped."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from graphsim import GraphSimulator
from reactor.config import Secret
from reactor.demo.stack import Stack, local_stack
from tests.e2e.helpers import idle, ready
from tests.support.eventually import eventually
from tests.support.page import Page
from tests.support.reactor_proc import write_config
from tests.support.tenant_names import RECEPTION, ROLE

TOKEN = "explain-view-" + "t0k3n" * 8
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVIL = "Siobhán \"Shiv\" O'Brien <script>alert('x')</script> & Ωμέγα"


@dataclass
class Installation:
    stack: Stack
    ids: dict[str, str]
    config: Path


@pytest.fixture
async def installation(tmp_path: Path) -> AsyncIterator[Installation]:
    sim = GraphSimulator(token="sim-token")
    reception, cph, nights = (sim.add_group(display_name=n) for n in ("Reception", "Reception CPH", "Reception CPH nights"))
    fm = sim.add_group(display_name="FM staff")
    sim.add_member(reception, cph)
    sim.add_member(cph, nights)
    ids = {
        "alice": sim.add_user(user_principal_name="alice.ødegaard@contoso.com", display_name="Alice Ødegaard",
                              given_name="Alice", surname="Ødegaard", mail="alice.ødegaard@contoso.com"),
        "guest": sim.add_user(user_principal_name="siobhan.o'brien_gmail.com#EXT#@contoso.onmicrosoft.com",
                              display_name=EVIL, given_name="Siobhán", surname="O'Brien",
                              mail="siobhan.o'brien@gmail.com", user_type="Guest"),
        "dave": sim.add_user(user_principal_name="dave.smith@contoso.com", display_name="Dave Smith",
                             mail="dave.smith@contoso.local", on_premises_sync_enabled=True),
    }
    sim.add_member(nights, ids["alice"])
    sim.add_member(fm, ids["guest"])
    groups = {reception: (RECEPTION, "reception"), fm: (ROLE, "role")}
    async with local_stack(
        sim, groups, tmp_path / "reactor.db", sync={"reconcile_interval_seconds": 3600.0},
        server={"admin_token": Secret(TOKEN)},
    ) as stack:
        await ready(stack)
        await eventually(lambda: _holds(stack, ids["alice"]), what="alice provisioned")
        await idle(stack)
        s = stack.settings
        config = write_config(
            tmp_path / "reactor.toml",
            {
                "graph": {"tenant_id": s.graph.tenant_id, "base_url": s.graph.base_url, "token": sim.token or ""},
                "askcody": {"scim_url": s.askcody.scim_url, "token": s.askcody.token.reveal(),
                            "max_requests_per_second": 1000},
                "store": {"url": s.store.url},
            },
            [{"id": reception, "askcody_group": RECEPTION, "grants": "reception"},
             {"id": fm, "askcody_group": ROLE, "grants": "role"}],
        )
        yield Installation(stack, ids, config)


async def _holds(stack: Stack, entra_id: str) -> bool:
    return await stack.askcody_user(entra_id) is not None


async def cli_explain_json(config: Path, user: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reactor", "explain", user, "--json", "--config", str(config), env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report: dict[str, object] = json.loads(out)
    return report


async def test_a_nested_user_is_explained_on_the_admin_listener_as_reactor_explain_does(installation: Installation) -> None:
    stack = installation.stack
    async with httpx.AsyncClient(base_url=stack.admin_url, timeout=30) as client:
        home = Page()
        home.feed((await client.get("/", headers=AUTH)).text)
        assert "UPN, object id or e-mail" in home.text_by_id["search"]

        r = await client.get("/explain.json", params={"user": "alice.ødegaard@contoso.com"}, headers=AUTH)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        report = r.json()
        assert report == await cli_explain_json(installation.config, "alice.ødegaard@contoso.com")
        [group] = report["groups"]
        assert group["path_text"] == "Alice Ødegaard ∈ Reception CPH nights ∈ Reception CPH ∈ Reception"

        r = await client.get("/explain", params={"user": installation.ids["alice"]}, headers=AUTH)  # by object id
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "form-action 'self'" in r.headers["content-security-policy"]
    page = Page()
    page.feed(r.text)
    assert page.text_by_id["access"].startswith("AskCody access: active (in scope)")
    [path] = page.rows("paths")
    assert path == {"AskCody group": RECEPTION, "grants": "reception", "depth": "nested 2 deep",
                    "path": "Alice Ødegaard ∈ Reception CPH nights ∈ Reception CPH ∈ Reception"}
    state = {row["attribute"]: row for row in page.rows("state")}
    assert state["user_name"]["expected"] == state["user_name"]["AskCody holds now"] == "alice.ødegaard@contoso.com"
    assert state["groups"]["expected"] == state["groups"]["AskCody holds now"] == RECEPTION
    assert state["active"]["expected"] == state["active"]["AskCody holds now"] == "active"
    assert page.rows("difference") == [{"operation": "none, AskCody is in line"}]
    changes = page.rows("personchanges")
    assert any(c["what"].startswith("create user alice.ødegaard@contoso.com") for c in changes), changes
    assert all(c["cause"] for c in changes), changes


async def test_out_of_scope_unknown_and_bad_queries_say_so(installation: Installation) -> None:
    stack = installation.stack
    async with httpx.AsyncClient(base_url=stack.admin_url, timeout=30, headers=AUTH) as client:
        r = await client.get("/explain", params={"user": "dave.smith@contoso.local"})  # by e-mail
        assert r.status_code == 200
        page = Page()
        page.feed(r.text)
        assert "OUT OF SCOPE" in page.text_by_id["access"] and "in no configured group" in page.text_by_id["access"]
        assert page.rows("paths") == [{"AskCody group": "in no configured group"}]

        for path in ("/explain", "/explain.json"):
            nobody = await client.get(path, params={"user": "nobody@contoso.com"})
            assert nobody.status_code == 404 and "no such user" in nobody.text, (path, nobody.text)
            assert (await client.get(path)).status_code == 400
            assert (await client.get(path, params={"user": "  "})).status_code == 400
            assert (await client.get(path, params={"user": "a" * 321 + "@contoso.com"})).status_code == 400
        missing = Page()
        missing.feed((await client.get("/explain")).text)
        assert "UPN, object id or e-mail" in missing.text_by_id["search"]  # a person can search from there


async def test_the_view_needs_the_token_and_is_absent_from_the_public_listener(installation: Installation) -> None:
    stack, alice = installation.stack, installation.ids["alice"]
    async with httpx.AsyncClient(timeout=30) as client:
        for path in ("/explain", "/explain.json"):
            anonymous = await client.get(stack.admin_url + path, params={"user": alice})
            assert anonymous.status_code == 401 and "Ødegaard" not in anonymous.text, path
            wrong = await client.get(stack.admin_url + path, params={"user": alice},
                                     headers={"Authorization": f"Bearer {TOKEN}x"})
            assert wrong.status_code == 401, path
            public = await client.get(stack.url + path, params={"user": alice}, headers=AUTH)
            assert public.status_code == 404 and "Ødegaard" not in public.text, path


async def test_every_value_is_escaped(installation: Installation) -> None:
    stack = installation.stack
    async with httpx.AsyncClient(base_url=stack.admin_url, timeout=30, headers=AUTH) as client:
        await eventually(lambda: _holds(stack, installation.ids["guest"]), what="the guest provisioned")
        query = "siobhan.o'brien@gmail.com\"><script>"  # nobody: echoed back into the form, escaped
        nobody = await client.get("/explain", params={"user": query})
        r = await client.get("/explain", params={"user": "siobhan.o'brien@gmail.com"})
    assert nobody.status_code == 404
    assert "<script>" not in nobody.text and "&quot;&gt;&lt;script&gt;" in nobody.text
    assert r.status_code == 200
    assert "<script>" not in r.text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in r.text
    page = Page()
    page.feed(r.text)
    assert page.text_by_id["who"].startswith("siobhan.o'brien_gmail.com#EXT#@contoso.onmicrosoft.com")
    [path] = page.rows("paths")
    assert path["path"] == f"{EVIL} ∈ FM staff"
    assert {row["attribute"]: row for row in page.rows("state")}["display_name"]["AskCody holds now"] == EVIL


async def test_graph_refusing_the_read_is_a_503_that_says_so(installation: Installation) -> None:
    stack = installation.stack
    stack.sim.fail(count=1, status=403)  # the next Graph request: explain's look-up of the person
    async with httpx.AsyncClient(base_url=stack.admin_url, timeout=30, headers=AUTH) as client:
        r = await client.get("/explain.json", params={"user": "alice.ødegaard@contoso.com"})
        assert r.status_code == 503 and "could not read the person's state" in r.json()["error"], r.text
        assert TOKEN not in r.text and "sim-token" not in r.text
        again = await client.get("/explain.json", params={"user": "alice.ødegaard@contoso.com"})
    assert again.status_code == 200 and again.json()["in_scope"] is True
