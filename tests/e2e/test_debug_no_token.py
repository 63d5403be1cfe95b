"""At ``log_level = "debug"`` (which the README recommends for tracing) a whole end-to-end flow writes
no secret: neither the Graph bearer token, nor the AskCody token, nor a subscription's clientState
appears in any line, whether written by the reactor's events or by any library through stdlib
logging, nor on stdout/stderr."""

from __future__ import annotations

import io
import json
import logging
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphsim import GraphSimulator
from reactor import log
from reactor.demo.stack import Stack, local_stack
from tests.e2e.helpers import idle, ready
from tests.support.eventually import eventually
from tests.support.expected import Oracle, describe, diff, read_askcody
from tests.support.tenant import generate_tenant


class Everything(logging.Handler):
    """Keeps every record the root logger passes on, with its arguments and structured fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        self.lines.append(
            f"{record.name} {record.levelname} {record.getMessage()} {record.args!r} "
            f"{json.dumps(fields, default=str, ensure_ascii=False) if fields is not None else ''} "
            f"{logging.Formatter().formatException(record.exc_info) if record.exc_info else ''}"
        )


@pytest.fixture
def debug_output() -> Iterator[tuple[io.StringIO, Everything]]:
    """The service's logging at ``log_level = "debug"`` (as ``reactor serve`` sets it up), written to
    a buffer, and every record also kept raw; the previous logging set-up is restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream, everything = io.StringIO(), Everything()
    log.configure("debug", stream=stream)
    root.addHandler(everything)
    try:
        yield stream, everything
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        log.configure("info")


def secret_forms(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}


async def converged(stack: Stack, oracle: Oracle, what: str) -> None:
    problems: list[str] = []

    async def check() -> bool:
        nonlocal problems
        problems = diff(oracle.expected(stack.sim), await read_askcody(stack.scim_url, stack.scim_token))
        return not problems

    try:
        await eventually(check, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(problems)}") from None
    oracle.passed(oracle.expected(stack.sim))


async def test_a_full_flow_at_debug_writes_no_token(
    tmp_path: Path, debug_output: tuple[io.StringIO, Everything], capfd: pytest.CaptureFixture[str]
) -> None:
    stream, everything = debug_output
    graph_token, askcody_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    tenant = generate_tenant(7, 12)
    sim = GraphSimulator(token=graph_token)
    tenant.load(sim, tenant.users[:8])
    oracle = Oracle(tenant.rules())
    oracle.observe(sim)
    async with local_stack(
        sim, tenant.scope(), tmp_path / "reactor.db", scim_token=askcody_token,
        server={"log_level": "debug"}, sync={"reconcile_interval_seconds": 3600.0},
    ) as stack:
        assert stack.settings.server.log_level == "debug"
        await ready(stack)
        await converged(stack, oracle, "the start-up reconcile")

        tenant.load(sim, tenant.users[8:])  # added
        present = sorted(tenant.in_scope())
        changed, disabled, removed = present[0], present[1], present[2]
        sim.update_user(changed, display_name="Ελένη O'Brien-Γεωργίου", mail="eleni+fm@corp.contoso.local")
        sim.update_user(disabled, account_enabled=False)
        sim.hard_delete_user(removed)
        group = next(g for g in tenant.configured if present[3] in g.members)
        sim.remove_member(group.id, present[3])
        oracle.observe(sim)
        await converged(stack, oracle, "users added, changed, disabled, deleted and moved")
        await stack.engine.full_sync(cause="reactor sync")
        await idle(stack)
        client_states = {s["clientState"] for s in sim.subscriptions.values() if s.get("clientState")}
        assert await stack.service.store.dead_letters() == []

    assert client_states
    captured = capfd.readouterr()
    written = stream.getvalue().splitlines()
    lines = [*written, *everything.lines, *captured.out.splitlines(), *captured.err.splitlines()]
    # The capture is no empty room: debug lines of the reactor's events and of stdlib loggers are in it.
    assert any('"event":"notifications_journaled"' in line for line in written)
    assert any(" DEBUG " in line and not line.startswith("reactor ") for line in everything.lines)
    secrets_ = [("Graph token", graph_token), ("AskCody token", askcody_token), *(("clientState", c) for c in client_states)]
    for name, secret in secrets_:
        leaks = [line for line in lines for form in secret_forms(secret) if form in line]
        assert not leaks, f"the {name} is in {len(leaks)} log line(s), e.g. {leaks[0][:300]}"
    assert not [line for line in lines if "Bearer " in line and "<redacted>" not in line]
