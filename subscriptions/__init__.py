"""Ownership of the Graph change-notification subscriptions: create, adopt, renew, recreate."""

from subscriptions.lifecycle import handle_lifecycle
from subscriptions.manager import CHANGE_TYPE, RESOURCES, SubscriptionManager, new_client_state
from subscriptions.renewal import run_renewal
from subscriptions.status import ResourceStatus, SubscriptionsStatus

__all__ = [
    "CHANGE_TYPE",
    "RESOURCES",
    "ResourceStatus",
    "SubscriptionManager",
    "SubscriptionsStatus",
    "handle_lifecycle",
    "new_client_state",
    "run_renewal",
]
