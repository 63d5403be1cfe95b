"""The one-shot CLI verbs: ``sync``, ``subscriptions …``, ``deadletters …`` and ``audit``.

Each opens the store and the remote clients it needs, does its work and closes them. They print for
people by default and one JSON document with ``--json``. Return values are exit codes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import orjson

from reactor.config import Settings
from reactor.domain.operations import EnsureGroup, describe
from reactor.errors import ReactorError
from reactor.progressview import progress_view
from reactor.store import Store, open_store
from reactor.sync.engine import SyncEngine, plan_as_json
from reactor.wiring import Clients, build_clients
from subscriptions.listing import live_rows

EXIT_OK, EXIT_FAILURE = 0, 1


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


@asynccontextmanager
async def opened(settings: Settings, *, remote: bool = True) -> AsyncIterator[tuple[Store, Clients | None]]:
    store = open_store(settings.store)
    await store.open()
    clients = build_clients(settings, store) if remote else None
    try:
        yield store, clients
    finally:
        if clients is not None:
            await clients.aclose()
        await store.close()


async def sync_command(settings: Settings, *, dry_run: bool, as_json: bool) -> int:
    """``reactor sync [--dry-run] [--json]``: full reconcile from Graph's group members, its progress
    shown on stderr (:func:`~reactor.progressview.progress_view`; none with ``--json``)."""
    async with opened(settings) as (store, clients):
        assert clients is not None
        with progress_view(sys.stderr, quiet=as_json) as progress:
            engine = SyncEngine(settings, store, clients.reader, clients.scim, progress=progress)
            return await _sync(engine, store, dry_run=dry_run, as_json=as_json)


async def _sync(engine: SyncEngine, store: Store, *, dry_run: bool, as_json: bool) -> int:
    """Plan (``dry_run``) or sync everything and print the plan; the exit code."""
    if dry_run:
        plans = await engine.full_plan()
        if as_json:
            _json(dict(plan_as_json(plans), dry_run=True))
        else:
            _print_plan(plans, header="Plan (dry run, nothing changed)")
        return EXIT_OK
    try:
        plans = await engine.full_sync()
    except ReactorError as exc:
        sys.stderr.write(f"reactor: sync finished with failures: {exc}\n")
        return EXIT_FAILURE
    dead = await store.dead_letters()
    if as_json:
        _json(dict(plan_as_json(plans), dry_run=False, dead_letters=len(dead)))
    else:
        _print_plan(plans, header="Applied")
        if dead:
            _out(f"{len(dead)} dead letters waiting: reactor deadletters list")
    return EXIT_OK


def _print_plan(plans: Sequence[Any], *, header: str) -> None:
    ops = [(p.entra_id, op) for p in plans for op in p.operations]
    counts: dict[str, int] = {}
    ensured: set[str] = set()
    for _, op in ops:
        if isinstance(op, EnsureGroup):
            # Every user's plan names the groups it needs; each is ensured once for all of them.
            if op.entra_group_id in ensured:
                continue
            ensured.add(op.entra_group_id)
        name = describe(op).split(" ", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to do"
    _out(f"{header}: {sum(counts.values())} operations for {len(plans)} users ({summary})")
    for p in plans:
        who = p.facts.user.user_principal_name if p.facts.user else p.entra_id
        _out(f"  {who}")
        for op in p.operations:
            _out(f"    - {describe(op)}")


async def subscriptions_command(settings: Settings, action: str, *, as_json: bool = False) -> int:
    """``reactor subscriptions list|ensure|renew|delete``."""
    from subscriptions.manager import SubscriptionManager

    async with opened(settings) as (store, clients):
        assert clients is not None
        manager = SubscriptionManager(clients.graph, store, settings)
        await manager.load()
        if action == "list":
            state = await live_rows(manager)
            if as_json:
                _json(state)
            elif not state:
                _out("no subscriptions")
            else:
                for s in state:
                    _out("  ".join(f"{k}={v}" for k, v in s.items() if k != "clientState"))
            return EXIT_OK
        if action == "delete":
            deleted = await manager.delete_all()
            _out(f"deleted {len(deleted)} subscriptions" + (": " + ", ".join(deleted) if deleted else ""))
            return EXIT_OK
        status = await (manager.ensure() if action == "ensure" else manager.renew_all())
        _json(status.as_dict()) if as_json else _out(_status_text(status.as_dict()))
        return EXIT_OK if status.ok else EXIT_FAILURE


def _status_text(status: dict[str, Any]) -> str:
    lines = []
    for s in status["subscriptions"]:
        state = "ok" if not s["degraded"] else f"DEGRADED: {s['degraded']}"
        expiry = "" if s["seconds_to_expiry"] is None else f", expires in {s['seconds_to_expiry'] / 3600:.1f} h"
        lines.append(f"{s['resource']}: {s['subscription_id'] or '-'} {state}{expiry}")
    return "\n".join(lines)


async def replay_dead_letters(settings: Settings, ids: Sequence[int] | None) -> tuple[list[int], list[tuple[int, str]]]:
    """Re-run dead letters (``None``: all) from fresh state; a replayed one is removed.

    Returns the ids replayed and the ``(id, error)`` of those that failed again (kept).
    """
    async with opened(settings) as (store, clients):
        assert clients is not None
        engine = SyncEngine(settings, store, clients.reader, clients.scim)
        return await replay_with(engine, store, ids)


async def replay_with(engine: SyncEngine, store: Store, ids: Sequence[int] | None) -> tuple[list[int], list[tuple[int, str]]]:
    letters = await store.dead_letters()
    chosen = [d for d in letters if ids is None or d.id in ids]
    missing = sorted(set(ids or ()) - {d.id for d in letters})
    failed: list[tuple[int, str]] = [(i, "no such dead letter") for i in missing]
    replayed: list[int] = []
    for d in chosen:
        before = {x.id for x in await store.dead_letters()}
        try:
            if d.kind == "user":
                await engine.sync_user(d.object_id, cause=f"replay of dead letter {d.id}")
            else:
                await engine.reconcile(cause=f"replay of dead letter {d.id}")
        except ReactorError as exc:
            failed.append((d.id, str(exc)))
            continue
        after = await store.dead_letters()
        fresh = [x for x in after if x.id not in before]
        if fresh:
            # It failed again: keep the old letter, drop the duplicate the attempt just wrote.
            for x in fresh:
                await store.delete_dead_letter(x.id)
            failed.append((d.id, fresh[0].error))
            continue
        await store.delete_dead_letter(d.id)
        replayed.append(d.id)
    return replayed, failed


async def deadletters_command(
    settings: Settings, action: str, *, ids: Sequence[int] = (), replay_all: bool = False, as_json: bool = False
) -> int:
    """``reactor deadletters list`` / ``replay ID…`` / ``replay --all``."""
    if action == "list":
        async with opened(settings, remote=False) as (store, _):
            letters = await store.dead_letters()
        if as_json:
            _json([d.__dict__ for d in letters])
        elif not letters:
            _out("no dead letters")
        else:
            for d in letters:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.created_at))
                _out(f"{d.id}  {when}Z  {d.kind} {d.object_id}  {d.error}")
        return EXIT_OK
    replayed, failed = await replay_dead_letters(settings, None if replay_all else list(ids))
    for i in replayed:
        _out(f"replayed {i}")
    for i, err in failed:
        _out(f"failed {i}: {err}")
    return EXIT_OK if not failed else EXIT_FAILURE


async def audit_command(settings: Settings, *, user: str | None, since: float | None, as_json: bool) -> int:
    """``reactor audit [--user USER] [--since ISO] [--json]``: the audit trail, oldest first."""
    async with opened(settings, remote=False) as (store, _):
        rows = await store.audit(user=user, since=since)
    if as_json:
        _json([dict(asdict(r), journal_seqs=list(r.journal_seqs), time=_utc(r.at)) for r in rows])
        return EXIT_OK
    if not rows:
        _out("no audited operations" + (f" for {user}" if user else "") + (f" since {_utc(since)}" if since else ""))
        return EXIT_OK
    table = [("TIME (UTC)", "USER", "CAUSE", "OUTCOME", "OPERATION")]
    for r in rows:
        what = f"{r.operation} ({r.error})" if r.error else r.operation
        table.append((_utc(r.at), r.upn or r.entra_id, r.cause, r.outcome, what))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        _out("  ".join(cell.ljust(w) for cell, w in zip(line[:4], widths, strict=True)) + "  " + line[4])
    return EXIT_OK


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
