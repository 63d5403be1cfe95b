"""The webhook intake on the PostgreSQL store, over real HTTP: the 202 comes only after the commit,
what was acknowledged survives a reopen, and a database that cannot be written gives 503."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx

from reactor.app import create_app
from reactor.config import Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.errors import TransientError
from reactor.service import Service
from reactor.store import PostgresStore, SubscriptionRecord
from tests.support.eventually import eventually
from tests.support.postgres import Cluster
from tests.support.servers import serve_asgi

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "s3cr3t-client-state-0123456789abcdef"
GUEST = "7c1f0e2a-51b4-4c1e-9d0a-2f6e8b3c4d5e"
HYBRID = "0b9d8c7e-6f5a-4b3c-8d2e-1f0a9b8c7d6e"


def item(user: str) -> dict[str, object]:
    return {
        "subscriptionId": SUB,
        "clientState": STATE,
        "changeType": "updated",
        "resource": f"Users/{user}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user}", "id": user},
        "tenantId": TENANT,
    }


class Unreachable:
    """A handler whose AskCody is down: every unit fails for now, so journaled items stay pending."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, unit: WorkUnit) -> None:
        self.seen.append(unit.object_id)
        raise TransientError("AskCody unreachable (test)")


@contextlib.asynccontextmanager
async def serving(url: str, handler: Unreachable) -> AsyncIterator[str]:
    store = PostgresStore(url)
    await store.open()
    await store.save_subscription(
        SubscriptionRecord(SUB, "users", "updated,deleted", "https://x/notifications", "https://x/lifecycle", STATE,
                           time.time() + 3600, time.time())
    )
    await store.close()
    settings = with_overrides(Settings(), graph={"tenant_id": TENANT}, store={"url": url}, sync={"workers": 2})
    service = Service(settings, PostgresStore(url), handler)
    async with serve_asgi(create_app(service)) as base:
        yield base


async def test_202_only_after_the_commit_and_the_journal_survives_a_reopen(postgres_url: str) -> None:
    handler = Unreachable()
    async with serving(postgres_url, handler) as base, httpx.AsyncClient() as client:
        locker = await asyncpg.connect(postgres_url)
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE journal IN EXCLUSIVE MODE")
        answer = asyncio.create_task(client.post(f"{base}/notifications", json={"value": [item(GUEST)]}))

        async def writer_waits() -> bool:
            return bool(await locker.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'journal'::regclass"))

        await eventually(writer_waits, "the journal write waits for the lock", timeout=10)
        assert not answer.done(), "no answer while the journal write has not committed"
        await tx.rollback()
        await locker.close()
        assert (await answer).status_code == 202
        await eventually(lambda: GUEST in handler.seen, "the dispatcher got the journaled item")

    reopened = PostgresStore(postgres_url)
    await reopened.open()
    try:
        pending = await reopened.pending()
    finally:
        await reopened.close()
    assert [(e.object_id, e.payload["resourceData"]["id"]) for e in pending] == [(GUEST, GUEST)]
    assert "clientState" not in pending[0].payload


async def test_a_database_that_cannot_be_written_answers_503(postgres_cluster: Cluster, postgres_url: str) -> None:
    handler = Unreachable()
    async with serving(postgres_url, handler) as base, httpx.AsyncClient() as client:
        ok = await client.post(f"{base}/notifications", json={"value": [item(GUEST)]})
        assert ok.status_code == 202
        await eventually(lambda: GUEST in handler.seen, "the first notification was journaled and dispatched")
        await postgres_cluster.drop_database(postgres_url.rsplit("/", 1)[1])
        refused = await client.post(f"{base}/notifications", json={"value": [item(HYBRID)]})
        assert refused.status_code == 503
        assert refused.text == "journal unavailable, retry later"
