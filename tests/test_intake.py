"""The webhook intake over real HTTP: handshakes, per-item checks, limits, journal failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from reactor.domain.work import WorkUnit
from reactor.metrics import NOTIFICATIONS_REJECTED
from tests.support.eventually import eventually
from tests.support.intake import JSON, Recorder, Running, item, oid, start


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with start(tmp_path, Recorder()) as r:
        yield r


@pytest.mark.parametrize("route", ["/notifications", "/lifecycle"])
async def test_validation_handshake_echoes_decoded_token(running: Running, route: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}{route}?validationToken=Validation%3A%20Testing%20client%2Bapp%26x",
                              headers={"content-type": "text/plain"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Validation: Testing client+app&x"


@pytest.mark.parametrize("token", ["a" * 1025, "bad%0Atoken", "bell%07"])
async def test_validation_token_too_long_or_with_control_characters_is_refused(running: Running, token: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications?validationToken={token}")
    assert r.status_code == 400


async def test_mixed_batch_journals_only_the_good_items(running: Running) -> None:
    before = {
        reason: NOTIFICATIONS_REJECTED.labels("notifications", reason)._value.get()
        for reason in ("client_state", "tenant", "unknown_subscription")
    }
    good = [oid("u-good-1"), oid("u-good-2")]
    batch = [
        item(good[0]),
        item(oid("u-forged"), state="guessed-state"),
        item(oid("u-foreign"), tenant="99999999-9999-9999-9999-999999999999"),
        item(oid("u-unknown"), sub="bbbbbbbb-0000-0000-0000-000000000009"),
        item(good[1]),
    ]
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications", json={"value": batch})
    assert r.status_code == 202
    await eventually(lambda: running.recorder.seen() == set(good))
    assert running.recorder.seen() == set(good)
    payloads = [e.payload for u in running.recorder.units for e in u.entries]
    assert sorted(p["resourceData"]["id"] for p in payloads) == sorted(good)
    assert all("clientState" not in p for p in payloads), "the journal keeps no copy of the clientState"
    for reason in before:
        assert NOTIFICATIONS_REJECTED.labels("notifications", reason)._value.get() == before[reason] + 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"value": 3}', b'{"values": []}', b"\xff\xfe", b""],
)
async def test_malformed_body_is_400(running: Running, body: bytes) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400


async def test_oversized_body_is_413_with_content_length(running: Running) -> None:
    big = {"value": [item(oid(f"u{i}")) for i in range(100)]}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications", json=big)
    assert r.status_code == 413
    assert running.recorder.units == []


async def test_oversized_body_is_413_when_streamed_without_content_length(running: Running) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"value": ['
        for _ in range(100):
            yield b'{"subscriptionId": "x", "clientState": "y"},'
        yield b"{}]}"

    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


async def test_journal_write_failure_answers_503_and_nothing_is_lost(running: Running) -> None:
    blocker = sqlite3.connect(running.db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{running.url}/notifications", json={"value": [item(oid("u-retry"))]})
        assert r.status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{running.url}/notifications", json={"value": [item(oid("u-retry"))]})
    assert r.status_code == 202
    await eventually(lambda: oid("u-retry") in running.recorder.seen())


async def test_duplicates_are_coalesced_into_one_unit(tmp_path: Path) -> None:
    gate = asyncio.Event()
    units: list[WorkUnit] = []

    class Gated(Recorder):
        async def __call__(self, unit: WorkUnit) -> None:
            if unit.object_id == oid("u-blocker"):
                await gate.wait()
            units.append(unit)

    async with start(tmp_path, Gated(), workers=1) as r:
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{r.url}/notifications", json={"value": [item(oid("u-blocker"))]})).status_code == 202
            dispatcher = r.service.dispatcher
            await eventually(lambda: ("user", oid("u-blocker")) in dispatcher._busy)
            answers = await asyncio.gather(
                *(client.post(f"{r.url}/notifications", json={"value": [item(oid("u-dup"))] * 5}) for _ in range(10))
            )
            assert {a.status_code for a in answers} == {202}
        gate.set()
        await eventually(lambda: any(u.object_id == oid("u-dup") for u in units))
        assert await r.service.dispatcher.wait_idle(5)
        dup_units = [u for u in units if u.object_id == oid("u-dup")]
        assert len(dup_units) == 1
        assert len(dup_units[0].entries) == 50
        count, _ = await r.store.backlog()
        assert count == 0


async def test_one_object_is_never_handled_by_two_workers_at_once(tmp_path: Path) -> None:
    in_flight: dict[str, int] = {}
    worst: dict[str, int] = {}
    total_worst = 0
    handled: list[str] = []

    class Slow(Recorder):
        async def __call__(self, unit: WorkUnit) -> None:
            nonlocal total_worst
            oid = unit.object_id
            in_flight[oid] = in_flight.get(oid, 0) + 1
            worst[oid] = max(worst.get(oid, 0), in_flight[oid])
            total_worst = max(total_worst, sum(in_flight.values()))
            await asyncio.sleep(0.02)  # simulated work, not a wait for work
            in_flight[oid] -= 1
            handled.extend([oid] * len(unit.entries))

    async with start(tmp_path, Slow(), workers=4) as r:
        users = [oid("u-a"), oid("u-b"), oid("u-c")]
        async with httpx.AsyncClient() as client:
            for _ in range(8):
                answers = await asyncio.gather(
                    *(client.post(f"{r.url}/notifications", json={"value": [item(u)]}) for u in users * 2)
                )
                assert {a.status_code for a in answers} == {202}
                await asyncio.sleep(0.005)
        await eventually(lambda: len(handled) == 48, timeout=20)
        assert max(worst.values()) == 1
        assert total_worst > 1, "the pool never ran objects in parallel, so serialization was not exercised"
