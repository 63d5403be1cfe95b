"""Arbitrary bytes and arbitrary JSON thrown at both webhook routes: no crash and no 5xx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.app import create_app
from reactor.config import Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.service import Service
from reactor.store import SQLiteStore, SubscriptionRecord
from tests.support.servers import serve_in_thread

TENANT = "11111111-2222-3333-4444-555555555555"
SUB = "aaaaaaaa-0000-0000-0000-000000000001"
STATE = "fuzz-client-state"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=25,
)
items = st.fixed_dictionaries(
    {},
    optional={
        "subscriptionId": st.sampled_from([SUB, SUB.upper(), "x", ""]) | st.text(max_size=70),
        "clientState": st.sampled_from([STATE, "nope"]) | json_values,
        "tenantId": st.sampled_from([TENANT, "other"]) | json_values,
        "changeType": st.sampled_from(["updated", "deleted"]) | json_values,
        "resource": st.sampled_from(["Users/abc", "Groups/def", "users", "/", ""]) | json_values,
        "resourceData": json_values | st.fixed_dictionaries({"@odata.type": st.text(max_size=30), "id": json_values}),
        "lifecycleEvent": st.sampled_from(["reauthorizationRequired", "missed"]) | json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.just(b'{"value": [{"subscriptionId": 123456789012345678901234567890}]}'),
    json_values.map(orjson.dumps),
    st.lists(items | json_values, max_size=6).map(lambda v: orjson.dumps({"value": v})),
)


class Discard:
    async def __call__(self, unit: WorkUnit) -> None:
        return None


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import asyncio

    tmp: Path = tmp_path_factory.mktemp("fuzz")
    db = tmp / "reactor.db"

    async def seed() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        await store.save_subscription(
            SubscriptionRecord(
                SUB, "users", "updated,deleted", "https://x/n", "https://x/l", STATE, time.time() + 3600, time.time()
            )
        )
        await store.close()

    asyncio.run(seed())
    s = with_overrides(
        Settings(), graph={"tenant_id": TENANT}, store={"url": f"sqlite:///{db}"}, server={"max_body_bytes": 2048}
    )
    service = Service(s, SQLiteStore(str(db)), Discard())
    with serve_in_thread(create_app(service)) as base:
        yield base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(["/notifications", "/lifecycle"]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
def test_arbitrary_bodies_never_cause_a_server_error(url: str, body: bytes, route: str, content_type: str) -> None:
    r = httpx.post(f"{url}{route}", content=body, headers={"content-type": content_type}, timeout=10)
    if content_type != "application/json":
        assert r.status_code == 415, (r.status_code, r.text)
    else:
        assert r.status_code in (202, 400, 413), (r.status_code, r.text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=1200), route=st.sampled_from(["/notifications", "/lifecycle"]))
def test_arbitrary_validation_tokens_are_echoed_or_refused(url: str, token: str, route: str) -> None:
    r = httpx.post(f"{url}{route}", params={"validationToken": token}, timeout=10)
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert r.text == token
