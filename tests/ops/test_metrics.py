"""``GET /metrics`` over real HTTP after changes flowed end to end (Entra → notification → journal →
worker → Graph read → SCIM write): every metric operators rely on is exported, and moved."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from reactor.demo.stack import Stack
from tests.support.faultproxy import fault_proxy
from tests.support.scim_server import scim_server
from tests.support.tenant_names import Eventually, StackFactory

Families = dict[str, Metric]

EXPECTED = {
    "reactor_notifications_received": "counter",
    "reactor_notifications_accepted": "counter",
    "reactor_notifications_rejected": "counter",
    "reactor_journal_write_seconds": "histogram",
    "reactor_queue_depth": "gauge",
    "reactor_oldest_pending_age_seconds": "gauge",
    "reactor_graph_calls": "counter",
    "reactor_scim_requests": "counter",
    "reactor_retries": "counter",
    "reactor_dead_letters": "gauge",
    "reactor_dead_lettered": "counter",
    "reactor_subscription_expiry_seconds": "gauge",
    "reactor_subscription_earliest_expiry_seconds": "gauge",
    "reactor_reconcile_duration_seconds": "histogram",
    "reactor_reconcile_drift": "counter",
    "reactor_apply_lag_seconds": "histogram",
    "reactor_changes_applied": "counter",
    "reactor_ready": "gauge",
}


async def scrape(url: str) -> Families:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: Families, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 when none)."""
    family = families[sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")]
    return sum(
        s.value for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def forged_notification(stack: Stack) -> None:
    """A notification for one of our subscriptions with a wrong clientState: dropped and counted."""
    sub_id = next(iter(stack.sim.subscriptions))
    item = {
        "subscriptionId": sub_id, "clientState": "not-the-secret", "tenantId": stack.sim.tenant_id,
        "changeType": "updated", "resource": "users/00000000-0000-0000-0000-000000000001",
        "resourceData": {"id": "00000000-0000-0000-0000-000000000001"},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(stack.url + "/notifications", json={"value": [item]})
    assert r.status_code == 202


async def test_every_metric_is_exported_and_moves_with_the_flow(
    make_stack: StackFactory,
    provision: Callable[[Stack, str], Awaitable[str]],
    tenant_groups: dict[str, str],
    wait: Eventually,
) -> None:
    async with scim_server() as scim, fault_proxy(scim.url) as proxy, make_stack(
        scim_url=proxy.url, scim_token=scim.token
    ) as stack:
        before = await scrape(stack.admin_url)
        await provision(stack, "alice")
        await provision(stack, "bob")
        await forged_notification(stack)

        # AskCody fails while a change waits: the age of the oldest pending change must grow between
        # scrapes (computed at scrape time, not left at whatever a worker last wrote).
        outage = proxy.unavailable(times=1_000_000)
        carol = stack.sim.add_user(user_principal_name="carol@contoso.com", display_name="Carol", mail="carol@contoso.com")
        stack.sim.add_member(tenant_groups["Facility Management"], carol)
        stuck: Families = {}

        async def waiting_long_enough() -> bool:
            nonlocal stuck
            stuck = await scrape(stack.admin_url)
            return value(stuck, "reactor_queue_depth") >= 1 and value(stuck, "reactor_oldest_pending_age_seconds") >= 1.5

        await wait(waiting_long_enough, "a pending change older than 1.5 s on /metrics")
        outage.times = outage.hits  # AskCody is back

        async def carol_applied() -> bool:
            return carol in (await stack.askcody_groups()).get("Facility Management", set())

        await wait(carol_applied, "carol provisioned once AskCody is back")
        await wait(lambda: stack.service.dispatcher.wait_idle(0.5), "the queue drained")
        after = await scrape(stack.admin_url)

    for name, kind in EXPECTED.items():
        assert name in after, f"{name} missing from /metrics"
        assert after[name].type == kind, f"{name} is a {after[name].type}, expected a {kind}"

    def delta(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert delta("reactor_notifications_received_total", route="notifications") >= 3
    assert delta("reactor_notifications_accepted_total", route="notifications") >= 2
    assert delta("reactor_notifications_rejected_total", route="notifications", reason="client_state") == 1
    assert delta("reactor_journal_write_seconds_count") >= 2
    assert delta("reactor_graph_calls_total", outcome="ok") > 0
    assert delta("reactor_scim_requests_total", outcome="ok") > 0
    assert delta("reactor_scim_requests_total", outcome="server_error") > 0
    assert delta("reactor_retries_total", target="askcody") > 0
    assert delta("reactor_changes_applied_total") >= 3
    assert delta("reactor_apply_lag_seconds_count") >= 3
    assert value(after, "reactor_apply_lag_seconds_sum") > 0
    assert value(after, "reactor_reconcile_duration_seconds_count") >= 1
    assert value(after, "reactor_queue_depth") == 0
    assert value(after, "reactor_oldest_pending_age_seconds") == 0
    assert value(after, "reactor_dead_letters") == 0

    expiry = {s.labels["resource"]: s.value for s in after["reactor_subscription_expiry_seconds"].samples}
    assert len(expiry) == 2 and all(v > 3600 for v in expiry.values()), expiry
    assert value(after, "reactor_subscription_earliest_expiry_seconds") == min(expiry.values())

    # The lag histogram saw carol's change, which waited out the outage.
    lag_buckets = {s.labels["le"]: s.value for s in after["reactor_apply_lag_seconds"].samples if s.name.endswith("_bucket")}
    assert lag_buckets["+Inf"] - lag_buckets["1.0"] >= 1, lag_buckets
