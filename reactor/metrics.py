"""Prometheus metrics of the reactor, all on one registry so that tests and ``/metrics`` see the same set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

NOTIFICATIONS_RECEIVED = Counter(
    "reactor_notifications_received", "Notification items received", ["route"], registry=REGISTRY
)
NOTIFICATIONS_ACCEPTED = Counter(
    "reactor_notifications_accepted", "Notification items journaled", ["route"], registry=REGISTRY
)
NOTIFICATIONS_REJECTED = Counter(
    "reactor_notifications_rejected",
    "Notification items dropped, by reason (client_state, tenant, unknown_subscription, malformed)",
    ["route", "reason"],
    registry=REGISTRY,
)
REQUESTS_REFUSED = Counter(
    "reactor_intake_requests_refused", "Whole intake requests refused, by HTTP status", ["status"], registry=REGISTRY
)
JOURNAL_WRITE_SECONDS = Histogram(
    "reactor_journal_write_seconds",
    "Latency of a durable journal write (group commit)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("reactor_queue_depth", "Objects waiting to be synced", registry=REGISTRY)
OLDEST_PENDING_AGE = Gauge(
    "reactor_oldest_pending_age_seconds", "Age of the oldest journaled change not yet applied", registry=REGISTRY
)
WORKERS_BUSY = Gauge("reactor_workers_busy", "Workers handling an object right now", registry=REGISTRY)
GRAPH_CALLS = Counter(
    "reactor_graph_calls", "Graph requests by operation and outcome", ["operation", "outcome"], registry=REGISTRY
)
GRAPH_BUDGET_WAIT = Counter(
    "reactor_graph_budget_wait_seconds",
    "Seconds Graph requests waited for graph.max_requests_per_second (summed over concurrent requests)",
    registry=REGISTRY,
)
SCIM_REQUESTS = Counter(
    "reactor_scim_requests", "AskCody SCIM requests by method and outcome", ["method", "outcome"], registry=REGISTRY
)
SCIM_BULK_OPERATIONS = Counter(
    "reactor_scim_bulk_operations",
    "Writes sent inside AskCody SCIM bulk requests, by method and outcome (ok, or the status)",
    ["method", "outcome"],
    registry=REGISTRY,
)
RETRIES = Counter("reactor_retries", "Retries of remote calls, by target", ["target"], registry=REGISTRY)
DEAD_LETTERS = Gauge("reactor_dead_letters", "Changes waiting in the dead letters", registry=REGISTRY)
DEAD_LETTERED = Counter("reactor_dead_lettered", "Changes that went to the dead letters", registry=REGISTRY)
SUBSCRIPTION_EXPIRY_SECONDS = Gauge(
    "reactor_subscription_expiry_seconds", "Seconds until a subscription expires", ["resource"], registry=REGISTRY
)
SUBSCRIPTION_EARLIEST_EXPIRY_SECONDS = Gauge(
    "reactor_subscription_earliest_expiry_seconds",
    "Seconds until the earliest of our subscriptions expires (0 when there is none)",
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "reactor_reconcile_duration_seconds",
    "Duration of a reconcile run",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
RECONCILE_DRIFT = Counter(
    "reactor_reconcile_drift", "SCIM operations a reconcile found necessary (drift repaired)", registry=REGISTRY
)
ATTRIBUTES_REFUSED = Counter(
    "reactor_scim_attributes_refused",
    "Optional user attributes AskCody refused (400), left out so that the user is still provisioned",
    ["attribute"],
    registry=REGISTRY,
)
CHANGES_APPLIED = Counter("reactor_changes_applied", "SCIM operations applied, by kind", ["operation"], registry=REGISTRY)
APPLY_LAG_SECONDS = Histogram(
    "reactor_apply_lag_seconds",
    "Seconds from notification receipt to the change applied in AskCody",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
READY = Gauge("reactor_ready", "1 when /readyz answers 200", registry=REGISTRY)
READINESS_CHECK = Gauge(
    "reactor_readiness_check",
    "1 when the named /readyz check passes (fatal: whether its failure makes /readyz answer 503)",
    ["check", "fatal"],
    registry=REGISTRY,
)

# Known label values start at 0, so that rate() and absent() work before the first event.
for _route in ("notifications", "lifecycle"):
    NOTIFICATIONS_RECEIVED.labels(_route)
    NOTIFICATIONS_ACCEPTED.labels(_route)
    for _reason in ("client_state", "tenant", "unknown_subscription", "malformed"):
        NOTIFICATIONS_REJECTED.labels(_route, _reason)

METRIC_NAMES: tuple[str, ...] = tuple(
    sorted(
        {
            name
            for collector in list(REGISTRY._collector_to_names)
            for name in REGISTRY._collector_to_names[collector]
        }
    )
)
"""Every sample name the service exports (e.g. ``reactor_notifications_received_total``)."""
