"""The status page in a real browser (headless Chromium, Debian's package, installed by
``scripts/install-system-deps``): after a few changes were applied it shows the subscriptions, the
backlog and the recent changes, uses no external asset, and leaves a screenshot in ``artifacts/``."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from reactor.config import Secret
from reactor.demo.stack import Stack
from tests.support.authproxy import bearer_proxy
from tests.support.page import Page
from tests.support.tenant_names import Eventually, StackFactory

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

def chromium_command(user_data_dir: Path, *args: str) -> list[str]:
    path = shutil.which("chromium") or CHROMIUM
    assert Path(path).exists(), "chromium is missing: run scripts/install-system-deps (as root)"
    return [
        path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={user_data_dir}", *args,
    ]


async def chromium(user_data_dir: Path, *args: str, timeout: float = 30) -> str:
    """Run headless Chromium without blocking the event loop (the servers live in it); its stdout."""
    process = await asyncio.create_subprocess_exec(
        *chromium_command(user_data_dir, *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


TOKEN = "status-page-" + "t0ken" * 8


async def test_status_page_in_headless_chromium(
    make_stack: StackFactory,
    provision: Callable[[Stack, str], Awaitable[str]],
    wait: Eventually,
    tmp_path: Path,
) -> None:
    """The page as a person sees it, on the admin listener with an admin token (the browser goes
    through a proxy that adds the bearer header, as an authenticating gateway would)."""
    async with make_stack(server={"admin_token": Secret(TOKEN)}) as stack, bearer_proxy(stack.admin_url, TOKEN) as page_url:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(stack.admin_url + "/")).status_code == 401, "the page needs the token"
        await _check_page(stack, page_url, provision, wait, tmp_path)


async def _check_page(
    stack: Stack, page_url: str, provision: Callable[[Stack, str], Awaitable[str]], wait: Eventually, tmp_path: Path
) -> None:
    names = ["alice", "bob", "carol"]
    for name in names:
        await provision(stack, name)
    await wait(lambda: stack.service.dispatcher.wait_idle(0.5), "the queue drained")

    dom = await chromium(tmp_path / "profile-dom", "--dump-dom", page_url + "/")
    page = Page()
    page.feed(dom)

    assert "AskCody Entra reactor" in page.title
    assert page.text_by_id["state"] == "Ready"
    assert page.external == [], "the status page must work offline"

    subscriptions = page.rows("subscriptions")
    assert {r["resource"] for r in subscriptions} == {"users", "groups"}, subscriptions
    for row in subscriptions:
        assert row["id"] in stack.sim.subscriptions, row
        assert row["expires in"].endswith(("h", "days")), row
        assert row["state"] == "live", row

    assert page.text_by_id["backlog"].startswith("0 objects pending"), page.text_by_id["backlog"]
    assert "Backlog 0 pending" in page.text_by_id["summary"], page.text_by_id["summary"]

    changes = page.rows("changes")
    for name in names:
        mine = [c for c in changes if c["who"] == f"{name}@contoso.com"]
        assert mine, (name, changes)
        assert any("create" in c["what"].lower() for c in mine), mine
        assert all(c["why"] and c["when"].endswith("ago") for c in mine), mine

    assert page.rows("deadletters") == [{"id": "none"}]
    assert {r["check"] for r in page.rows("checks")} >= {"store", "workers", "askcody", "graph", "subscriptions"}
    assert "UPN, object id or e-mail" in page.text_by_id["search"]

    # Where the search form leads (GET explain?user=…): the person's view, as the browser renders it.
    explained = Page()
    explained.feed(await chromium(tmp_path / "profile-explain", "--dump-dom", page_url + "/explain?user=alice%40contoso.com"))
    assert explained.external == []
    assert explained.text_by_id["access"].startswith("AskCody access: active (in scope)"), explained.text_by_id
    assert [r["AskCody group"] for r in explained.rows("paths")] == ["Facility Management"]
    assert any(c["what"].startswith("create user alice@contoso.com") for c in explained.rows("personchanges"))

    # The page a person sees, kept as a test artifact.
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    await chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,900", page_url + "/")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    explain_shot = ARTIFACTS / "explain-page.png"
    explain_shot.unlink(missing_ok=True)
    await chromium(tmp_path / "profile-explain-shot", f"--screenshot={explain_shot}", "--window-size=1280,900",
                   page_url + "/explain?user=alice%40contoso.com")
    assert explain_shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(page_url + "/")
    assert r.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh"' in r.text
