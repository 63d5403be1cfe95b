"""When to create, renew, verify and retry our subscriptions: the timing rules, without state or I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reactor.backoff import Backoff
from reactor.config import SubscriptionSettings
from reactor.store.base import SubscriptionRecord

CHANGE_TYPE = "updated,deleted"
RESOURCES: tuple[str, ...] = ("users", "groups")
REAUTHORIZE_DEBOUNCE_SECONDS = 30.0
"""A ``reauthorizationRequired`` this soon after a create, renewal or reauthorization was most likely
sent before that call and is answered by it. Any later one is Graph asking for a reason, and a
reauthorization is one cheap POST: seconds, not minutes."""
RETRY_BACKOFF = Backoff(initial=30.0, maximum=900.0, jitter=0.5)
"""Creation and renewal attempts that failed: 30 s doubling to 15 min, each between half and all of it."""


@dataclass(frozen=True)
class RenewalPolicy:
    """The lifetime we ask Graph for, and when a granted one is due for renewal."""

    settings: SubscriptionSettings

    def requested_expiry(self, now: float) -> float:
        """The ``expirationDateTime`` to ask for at ``now`` (``subscriptions.lifetime_minutes`` ahead)."""
        return now + self.settings.lifetime_minutes * 60.0

    @staticmethod
    def lifetime(record: SubscriptionRecord) -> float:
        """The lifetime Graph granted at the last create or renewal."""
        return record.expires_at - max(record.created_at, record.last_renewed_at)

    def renew_at(self, record: SubscriptionRecord) -> float:
        """When ``record`` becomes due: less than ``renew_when_remaining_share`` of its lifetime left."""
        return record.expires_at - self.settings.renew_when_remaining_share * self.lifetime(record)

    @staticmethod
    def reauthorize_debounced(record: SubscriptionRecord, now: float) -> float | None:
        """Seconds since the last create, renewal or reauthorization when that is within
        :data:`REAUTHORIZE_DEBOUNCE_SECONDS` (the event is then skipped), else None."""
        since = now - max(record.last_renewed_at, record.last_reauthorized_at, record.created_at)
        return since if since < REAUTHORIZE_DEBOUNCE_SECONDS else None
