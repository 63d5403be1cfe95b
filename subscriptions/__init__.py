"""Ownership of the Graph change-notification subscriptions: create, adopt, renew, recreate."""
