"""Notifications of a subscription that was just created are never dropped: not when the record was
written a moment after the intake last read the store, not when Graph delivers before its 201."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from reactor.store import SQLiteStore, SubscriptionRecord
from tests.support.eventually import eventually
from tests.support.intake import Recorder, item, oid, start

NEW_SUB = "cccccccc-0000-4000-8000-000000000003"
NEW_STATE = "fresh-client-state-" + "n" * 30


def record(sub_id: str, state: str) -> SubscriptionRecord:
    return SubscriptionRecord(sub_id, "groups", "updated,deleted", "https://x/n", "https://x/l", state,
                              time.time() + 3600, time.time())


async def test_a_subscription_stored_just_after_a_reload_is_recognised(tmp_path: Path) -> None:
    async with start(tmp_path, Recorder()) as r:
        # Another writer (the manager of this or another replica) stores a new subscription right
        # after the intake's cache was (re)loaded: within the reload rate limit.
        other = SQLiteStore(str(r.db))
        await other.open()
        try:
            await r.service.client_states.refresh()
            await other.save_subscription(record(NEW_SUB, NEW_STATE))
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(*(
                    client.post(f"{r.url}/notifications", json={"value": [item(oid(f"n{i}"), sub=NEW_SUB, state=NEW_STATE)]})
                    for i in range(5)
                ))
        finally:
            await other.close()
        assert {a.status_code for a in answers} == {202}
        await eventually(lambda: r.recorder.seen() == {oid(f"n{i}") for i in range(5)}, "every item journaled and handled")


async def test_an_item_whose_client_state_is_pending_is_accepted_before_the_subscription_is_stored(tmp_path: Path) -> None:
    async with start(tmp_path, Recorder()) as r:
        other = SQLiteStore(str(r.db))
        await other.open()
        try:
            await other.save_subscription(record("pending:groups:1", NEW_STATE))
        finally:
            await other.close()
        async with httpx.AsyncClient() as client:
            url = f"{r.url}/notifications"
            ok = await client.post(url, json={"value": [item(oid("early"), sub=NEW_SUB, state=NEW_STATE)]})
            forged = await client.post(url, json={"value": [item(oid("forged"), sub=NEW_SUB, state="guess")]})
        assert ok.status_code == forged.status_code == 202
        await eventually(lambda: oid("early") in r.recorder.seen(), "the early item handled")
        assert await r.service.dispatcher.wait_idle(5)
        assert r.recorder.seen() == {oid("early")}, "an unknown subscription with a clientState that is not pending is dropped"
        # A pending record is not a subscription: the status does not list it.
        assert [s["id"] for s in (await r.service.status())["subscriptions"]] == ["aaaaaaaa-0000-0000-0000-000000000001"]
