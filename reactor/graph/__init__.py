"""Microsoft Graph access: a raw-JSON client (aiohttp, azure-identity tokens), and the reader of users,
groups and their deltas."""

from reactor.graph.client import GraphClient
from reactor.graph.reader import GraphReader, GroupChange, GroupsDelta, UsersDelta

__all__ = ["GraphClient", "GraphReader", "GroupChange", "GroupsDelta", "UsersDelta"]
