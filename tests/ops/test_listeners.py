"""Two listeners: the public one (what Graph reaches, exposed to the internet) serves only the
webhooks and ``/healthz``; the admin one serves the status page, ``/status.json``, ``/metrics`` and
``/readyz``, the first two behind a bearer token when one is configured."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import httpx
import orjson

from reactor.config import Secret
from reactor.demo.stack import Stack
from reactor.store import SQLiteStore, SubscriptionRecord
from tests.support.reactor_proc import ReactorProcess, write_config
from tests.support.servers import free_port
from tests.support.tenant_names import StackFactory

ADMIN_ONLY = ("/", "/status.json", "/metrics", "/readyz")
TOKEN = "admin-" + "k3y" * 12


async def test_the_public_listener_serves_only_the_webhooks_and_healthz(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for path in ADMIN_ONLY:
            r = await client.get(stack.url + path)
            assert r.status_code == 404, (path, r.status_code)
            assert "reactor" not in r.text.lower() and "@" not in r.text, r.text
        assert (await client.get(stack.url + "/healthz")).status_code == 200
        assert (await client.get(stack.url + "/notifications")).status_code == 405

        for path in (*ADMIN_ONLY, "/healthz"):
            r = await client.get(stack.admin_url + path)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert (await client.post(stack.admin_url + "/notifications", json={"value": []})).status_code in (404, 405)
        page = await client.get(stack.admin_url + "/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # The page's one inline <style> is allowed by its hash (and nothing else is): the page keeps its looks.
    css = page.text.split("<style>", 1)[1].split("</style>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page.headers["content-security-policy"]


async def test_with_an_admin_token_the_status_page_and_json_need_it_and_probes_do_not(make_stack: StackFactory) -> None:
    async with make_stack(server={"admin_token": Secret(TOKEN)}) as stack, httpx.AsyncClient(
        base_url=stack.admin_url, timeout=10
    ) as client:
        for path in ("/", "/status.json"):
            anonymous = await client.get(path)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in anonymous.text
            wrong = await client.get(path, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
            assert wrong.status_code == 401, path
            right = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200, path
        assert "subscriptions" in (await client.get("/status.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
        for path in ("/metrics", "/readyz", "/healthz"):
            assert (await client.get(path)).status_code == 200, path


async def test_reactor_serve_binds_both_listeners(tmp_path: Path) -> None:
    db = tmp_path / "reactor.db"
    store = SQLiteStore(str(db))
    await store.open()
    await store.save_subscription(
        SubscriptionRecord("aaaaaaaa-0000-4000-8000-000000000001", "users", "updated", "https://x/n", "https://x/l",
                           "state-" + "s" * 30, time.time() + 86400, time.time())
    )
    await store.close()
    port = free_port()
    config = write_config(
        tmp_path / "reactor.toml",
        {"server": {"port": port}, "graph": {"tenant_id": "11111111-2222-3333-4444-555555555555"},
         "store": {"url": f"sqlite:///{db}"}, "subscriptions": {"enabled": False}},
    )
    proc = ReactorProcess(config, port, "--record", str(tmp_path / "handled.jsonl")).start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for path in ADMIN_ONLY:
                assert (await client.get(proc.url + path)).status_code == 404, path
            assert (await client.get(proc.admin_url + "/metrics")).status_code == 200
            assert (await client.get(proc.admin_url + "/status.json")).json()["subscriptions"][0]["resource"] == "users"
            assert (await client.get(proc.admin_url + "/")).headers["content-type"].startswith("text/html")
        serve = next(orjson.loads(line) for line in proc.log.read_text().splitlines() if '"event":"serve"' in line)
    finally:
        proc.kill()
    # The start line says where each listener is and which Graph credential is in use (never a secret).
    assert (serve["port"], serve["admin_port"], serve["store"]) == (port, proc.admin_port, "sqlite")
    assert serve["graph_credential"] == "managed-identity"
