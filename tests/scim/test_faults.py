"""Failures injected by the fault proxy in front of the real scim2-server: retries converge, others do not retry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from reactor import retry
from reactor.config import AskCodySettings
from reactor.domain.model import UserAttributes
from reactor.errors import PermanentError, ThrottledError, TransientError
from reactor.metrics import REGISTRY
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient, ScimError
from reactor.scim.client import parse_retry_after
from tests.support.faultproxy import FaultProxy, ProxiedRequest, fault_proxy
from tests.support.retries import recording
from tests.support.scim_server import ScimServer

ATTRS = UserAttributes("alice@contoso.com", "e-1", "Alice", "Alice", "Jensen", "alice@contoso.com", "CC-1")
POLICY = retry.RetryPolicy(attempts=5, horizon=60.0)


@pytest.fixture
async def proxy(server: ScimServer) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(server.url) as running:
        yield running


@pytest.fixture
async def client(
    proxy: FaultProxy, server: ScimServer, settings_for: Callable[..., AskCodySettings]
) -> AsyncIterator[AskCodyClient]:
    async with AskCodyClient(settings_for(proxy.url, server.token), TokenBucket(10_000), retry_policy=POLICY) as c:
        yield c


def retries() -> float:
    return REGISTRY.get_sample_value("reactor_retries_total", {"target": "askcody"}) or 0.0


def is_post(request: ProxiedRequest) -> bool:
    return request.method == "POST"


async def test_a_burst_of_503_converges(client: AskCodyClient, proxy: FaultProxy, server: ScimServer) -> None:
    proxy.unavailable(times=3, when=is_post)
    before = retries()
    with recording() as history:
        user, _ = await client.create_user(ATTRS)
    assert proxy.count("POST", "/Users") == 4
    assert len(server.resources("User")) == 1 and user.external_id == "e-1"
    assert retries() - before == 3
    assert [a.status for a in history] == [503, 503, 503]
    assert [a.number for a in history] == [1, 2, 3]
    assert all(a.wait is not None and a.wait > 0 for a in history)


async def test_a_burst_of_429_honours_retry_after(client: AskCodyClient, proxy: FaultProxy) -> None:
    proxy.throttle(times=2, retry_after=7)
    with recording() as history:
        await client.find_user("e-1")
    assert [(a.status, a.wait) for a in history] == [(429, 7.0), (429, 7.0)]
    assert proxy.count("GET", "/Users") == 3


async def test_503_with_retry_after_is_throttling(client: AskCodyClient, proxy: FaultProxy) -> None:
    proxy.unavailable(times=1, retry_after=2)
    with recording() as history:
        assert await client.find_user("e-1") is None
    assert [(a.status, a.wait) for a in history] == [(503, 2.0)]
    assert "ThrottledError" in history[0].error


async def test_a_400_is_permanent_and_not_retried(client: AskCodyClient, proxy: FaultProxy) -> None:
    user, _ = await client.create_user(ATTRS)
    proxy.reject(when=lambda r: r.method == "PATCH")
    before = retries()
    with recording() as history, pytest.raises(ScimError) as info:
        await client.set_active(user.id, False)
    assert isinstance(info.value, PermanentError)
    assert info.value.status == 400 and info.value.scim_type == "invalidValue"
    assert "injected by the fault proxy" in str(info.value)
    assert proxy.count("PATCH") == 1 and retries() == before
    assert [(a.status, a.wait) for a in history] == [(400, None)]


async def test_retries_run_out(client: AskCodyClient, proxy: FaultProxy) -> None:
    proxy.unavailable(times=100)
    with recording() as attempts, pytest.raises(TransientError):
        await client.find_user("e-1")
    assert proxy.count("GET") == POLICY.attempts
    assert [a.number for a in attempts] == [1, 2, 3, 4, 5]
    assert attempts[-1].wait is None


async def test_a_retry_after_beyond_the_horizon_gives_up_at_once(client: AskCodyClient, proxy: FaultProxy) -> None:
    proxy.throttle(times=1, retry_after=3600)
    with pytest.raises(ThrottledError) as info:
        await client.find_user("e-1")
    assert info.value.retry_after == 3600
    assert proxy.count("GET") == 1


async def test_a_create_retried_after_it_succeeded_adopts(client: AskCodyClient, proxy: FaultProxy, server: ScimServer) -> None:
    """A POST that reached AskCody but whose answer was lost: the retry meets 409 and adopts."""
    proxy.lose_answer(times=1, when=is_post)
    user, _ = await client.create_user(ATTRS)
    assert proxy.count("POST", "/Users") == 2
    assert len(server.resources("User")) == 1 and user.external_id == "e-1" and user.cost_center == "CC-1"


async def test_connection_refused_is_transient(settings_for: Callable[..., AskCodySettings]) -> None:
    from tests.support.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v2"
    policy = retry.RetryPolicy(attempts=2, horizon=10)
    async with AskCodyClient(settings_for(url, "t"), TokenBucket(10_000), retry_policy=policy) as client:
        with recording() as history, pytest.raises(TransientError):
            await client.find_user("e-1")
    assert [a.number for a in history] == [1, 2]


def test_retry_after_forms() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
