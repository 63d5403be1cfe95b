"""Health of our subscriptions, for ``/readyz``, the status page and the ``reactor_subscription_*`` gauges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reactor.metrics import SUBSCRIPTION_EARLIEST_EXPIRY_SECONDS, SUBSCRIPTION_EXPIRY_SECONDS


@dataclass(frozen=True)
class ResourceStatus:
    """One subscribed resource. ``degraded`` is None when a live subscription is not about to expire."""

    resource: str
    subscription_id: str | None
    expires_at: float | None
    seconds_to_expiry: float | None
    degraded: str | None
    last_error: str | None = None
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "subscription_id": self.subscription_id,
            "expires_at": self.expires_at,
            "seconds_to_expiry": None if self.seconds_to_expiry is None else round(self.seconds_to_expiry, 1),
            "degraded": self.degraded,
            "last_error": self.last_error,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class SubscriptionsStatus:
    """All subscribed resources; ``ok`` when none is degraded."""

    resources: list[ResourceStatus]

    @property
    def ok(self) -> bool:
        return all(r.degraded is None for r in self.resources)

    @property
    def reason(self) -> str | None:
        """One line naming every degraded resource and why, or None."""
        reasons = [f"{r.resource}: {r.degraded}" for r in self.resources if r.degraded]
        return "; ".join(reasons) or None

    def get(self, resource: str) -> ResourceStatus | None:
        return next((r for r in self.resources if r.resource == resource), None)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "subscriptions": [r.as_dict() for r in self.resources]}


def publish(status: SubscriptionsStatus) -> None:
    """Set the per-resource and earliest-expiry gauges (0 when a resource has no subscription)."""
    earliest: float | None = None
    for item in status.resources:
        seconds = max(0.0, item.seconds_to_expiry) if item.seconds_to_expiry is not None else 0.0
        SUBSCRIPTION_EXPIRY_SECONDS.labels(item.resource).set(seconds)
        earliest = seconds if earliest is None else min(earliest, seconds)
    SUBSCRIPTION_EARLIEST_EXPIRY_SECONDS.set(earliest or 0.0)
