"""GraphClient against the Graph simulator over real HTTP: auth, error mapping, retries, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken

from graphsim import GraphSimulator
from reactor.config import GraphSettings, Secret
from reactor.errors import (
    ConfigurationError,
    DeltaTokenExpired,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from reactor.graph.auth import build_credential, scope_for
from reactor.graph.batch import get_many
from reactor.graph.client import GraphClient, parse_retry_after
from reactor.metrics import REGISTRY
from reactor.ratelimit import TokenBucket
from reactor.retry import RetryPolicy
from tests.support.retries import recording

TENANT = "6f3c2a10-0000-4000-8000-00000000c0de"
TOKEN = "sim-test-token"


def _count(operation: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("reactor_graph_calls_total", {"operation": operation, "outcome": outcome}) or 0.0


def _retries() -> float:
    return REGISTRY.get_sample_value("reactor_retries_total", {"target": "graph"}) or 0.0


async def test_get_json_reads_raw_json_with_select(sim: GraphSimulator, client: GraphClient) -> None:
    uid = sim.add_user(user_principal_name="ada@example.com", display_name="Ada", mail="ada@example.com")
    before = _count("get_user", "ok")
    body = await client.get_json(f"users/{uid}", {"$select": "id,displayName,mail"}, operation="get_user")
    assert body["id"] == uid
    assert body["displayName"] == "Ada"
    assert "userPrincipalName" not in body
    assert _count("get_user", "ok") == before + 1


async def test_absolute_urls_on_our_origin_are_followed_others_refused(sim: GraphSimulator, client: GraphClient) -> None:
    uid = sim.add_user(user_principal_name="bo@example.com")
    body = await client.get_json(f"{client.base_url}/users/{uid}")
    assert body["id"] == uid
    with pytest.raises(PermanentError, match="outside"):
        await client.get_json("https://evil.example.com/v1.0/users")


async def test_404_maps_to_not_found(client: GraphClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.get_json("users/00000000-0000-0000-0000-000000000001", operation="get_user")
    assert "Request_ResourceNotFound" in str(info.value)


async def test_401_maps_to_permanent_error_without_the_token(graph_url: str) -> None:
    settings = GraphSettings(base_url=graph_url, token=Secret("wrong-secret-token"))
    async with GraphClient(settings) as graph:
        with pytest.raises(PermanentError) as info:
            await graph.get_json("users/x")
    assert info.value.status == 401
    assert "InvalidAuthenticationToken" in str(info.value)
    assert "wrong-secret-token" not in str(info.value)


async def test_429_honours_retry_after(sim: GraphSimulator, client: GraphClient) -> None:
    uid = sim.add_user(user_principal_name="cy@example.com")
    sim.throttle(2, retry_after=7, path_prefix="/v1.0/users")
    retries = _retries()
    throttled = _count("get_user", "throttled")
    with recording() as history:
        body = await client.get_json(f"users/{uid}", operation="get_user")
    assert body["id"] == uid
    assert [a.wait for a in history] == [7.0, 7.0]
    assert [a.status for a in history] == [429, 429]
    assert sim.calls["get_user"] == 3
    assert _count("get_user", "throttled") == throttled + 2
    assert _retries() == retries + 2


async def test_throttling_beyond_the_attempts_raises_throttled(graph_settings: GraphSettings, sim: GraphSimulator) -> None:
    sim.throttle(10, retry_after=3, path_prefix="/v1.0/users")
    async with GraphClient(graph_settings, retry=RetryPolicy(attempts=3)) as graph:
        with recording() as history, pytest.raises(ThrottledError) as info:
            await graph.get_json("users/x")
    assert info.value.retry_after == 3
    assert [a.wait for a in history] == [3.0, 3.0, None]


async def test_retry_after_beyond_the_horizon_is_not_waited(graph_settings: GraphSettings, sim: GraphSimulator) -> None:
    sim.throttle(1, retry_after=120, path_prefix="/v1.0/users")
    async with GraphClient(graph_settings, retry=RetryPolicy(horizon=60)) as graph:
        with recording() as history, pytest.raises(ThrottledError):
            await graph.get_json("users/x")
    assert [a.wait for a in history] == [None]


async def test_5xx_is_transient_and_retried_with_backoff(sim: GraphSimulator, client: GraphClient) -> None:
    uid = sim.add_user(user_principal_name="di@example.com")
    sim.fail(2, status=500, path_prefix="/v1.0/users")
    with recording() as history:
        assert (await client.get_json(f"users/{uid}"))["id"] == uid
    waits = [a.wait for a in history]
    assert len(waits) == 2 and all(w is not None and 0 < w <= 31 for w in waits)


async def test_post_is_never_retried_blindly(sim: GraphSimulator, client: GraphClient) -> None:
    sim.throttle(1, retry_after=1, path_prefix="/v1.0/subscriptions")
    with recording() as history, pytest.raises(ThrottledError):
        await client.post_json("subscriptions", {"resource": "users"}, operation="subscription_create")
    assert sim.calls["create_subscription"] == 1  # not sent again
    assert history == []


async def test_expired_delta_link_maps_to_delta_token_expired(sim: GraphSimulator, client: GraphClient) -> None:
    sim.add_user(user_principal_name="ed@example.com")
    first = await client.get_json("users/delta", {"$select": "id"})
    sim.expire_delta_tokens()
    with pytest.raises(DeltaTokenExpired):
        await client.get_json(first["@odata.deltaLink"])


async def test_connection_failure_is_transient(graph_settings: GraphSettings) -> None:
    settings = GraphSettings(base_url="http://127.0.0.1:9/v1.0", token=Secret("t"))
    async with GraphClient(settings, retry=RetryPolicy(attempts=2)) as graph:
        with pytest.raises(TransientError):
            await graph.get_json("users")


def test_plain_http_is_accepted_only_on_loopback() -> None:
    for url in ("http://127.0.0.1:8000/v1.0", "http://localhost/v1.0", "http://[::1]:8000/v1.0"):
        GraphClient(GraphSettings(base_url=url, token=Secret("t")))
    with pytest.raises(ConfigurationError, match="https"):
        GraphClient(GraphSettings(base_url="http://graph.example.com/v1.0", token=Secret("t")))


def test_scope_follows_the_base_url_host() -> None:
    assert scope_for("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/.default"
    assert scope_for("https://graph.microsoft.us/v1.0") == "https://graph.microsoft.us/.default"
    assert scope_for("https://microsoftgraph.chinacloudapi.cn:443/v1.0") == "https://microsoftgraph.chinacloudapi.cn/.default"


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


class FakeCredential:
    """An azure-identity style async credential handing out the simulator's token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 2**31)

    async def close(self) -> None:
        return None


async def test_azure_identity_credential_path(sim: GraphSimulator, graph_url: str) -> None:
    credential = FakeCredential(TOKEN)
    settings = GraphSettings(tenant_id=TENANT, client_id=TENANT, client_secret=Secret("s"), base_url=graph_url)
    uid = sim.add_user(user_principal_name="az@example.com")
    async with GraphClient(settings, credential=credential) as graph:  # type: ignore[arg-type]
        assert (await graph.get_json(f"users/{uid}"))["id"] == uid
    assert credential.scopes == [("https://127.0.0.1/.default",)]


async def test_credentials_follow_the_settings() -> None:
    secret = build_credential(
        GraphSettings(tenant_id=TENANT, client_id=TENANT, client_secret=Secret("s"), authority="login.microsoftonline.us")
    )
    default = build_credential(GraphSettings(tenant_id=TENANT))
    assert type(secret).__name__ == "ClientSecretCredential"
    assert type(default).__name__ == "DefaultAzureCredential"
    await secret.close()
    await default.close()


async def test_every_request_takes_a_token_and_a_batch_one_per_request_it_carries(
    sim: GraphSimulator, graph_settings: GraphSettings
) -> None:
    """Graph throttles each request of a ``$batch`` (in resource units): the client's budget counts
    them so, and waits for the tokens instead of running into Graph's 429s."""
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10, 20, clock=lambda: now[0], sleep=sleep)
    uids = [sim.add_user(user_principal_name=f"n{i}@contoso.onmicrosoft.com") for i in range(25)]
    async with GraphClient(graph_settings, bucket=bucket) as client:
        bodies = await get_many(client, [f"users/{uid}?$select=id" for uid in uids])
        assert sorted(b["id"] for b in bodies.values() if b) == sorted(uids)
        # 20 tokens in the bucket: the first batch (20 reads) goes at once, the second (5) waits 0.5 s.
        assert sum(waits) == pytest.approx(0.5)
        await client.get_json(f"users/{uids[0]}")
        assert sum(waits) == pytest.approx(0.6)  # a plain GET: one token, 0.1 s at 10 a second
    assert (REGISTRY.get_sample_value("reactor_graph_budget_wait_seconds_total") or 0.0) >= 0.6


def test_the_budget_follows_the_settings_and_holds_one_second_of_it_or_a_full_batch() -> None:
    def bucket(rate: float | None = None) -> tuple[float, float]:
        extra = {} if rate is None else {"max_requests_per_second": rate}
        client = GraphClient(GraphSettings(base_url="http://127.0.0.1:1/v1.0", token=Secret(TOKEN), **extra))
        return client.bucket.rate, client.bucket.burst

    assert bucket() == (50, 50)  # the default: 50 a second, never 500 at once after a quiet spell
    assert bucket(120) == (120, 120)
    assert bucket(7) == (7, 20)  # a slow budget still lets a full $batch (20 requests) go
