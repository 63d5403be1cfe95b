"""A Microsoft Graph simulator for users, groups, delta queries and change notifications.

It is the test double of every test and the tenant of ``reactor demo``; it follows
``graph-facts.md`` (subscription lifetimes, validation handshake, delta links, ``@removed`` reasons,
``members@delta``, throttling, delivery with duplicates and drops).

    sim = GraphSimulator(tenant_id=..., token="sim-token")
    uid = sim.add_user(user_principal_name="a@x.test", display_name="A")
    async with running_simulator(sim) as base_url:      # "http://127.0.0.1:PORT/v1.0"
        ...

Modules: :mod:`tenant` (directory and change log), :mod:`delta` (delta rounds and links),
:mod:`subscriptions` (subscription rules), :mod:`handshake`, :mod:`delivery` (notification sender),
:mod:`faults`, :mod:`app` (Graph routes), :mod:`control` (``/_sim`` routes), :mod:`seed`,
:mod:`simulator` (the facade), :mod:`server` (serving it). ``python -m graphsim`` runs one.
"""

from graphsim.clock import OffsetClock
from graphsim.faults import Faults
from graphsim.server import running_simulator
from graphsim.simulator import GraphSimulator

__all__ = ["Faults", "GraphSimulator", "OffsetClock", "running_simulator"]
