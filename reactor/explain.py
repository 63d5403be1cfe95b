"""One person at a time: ``reactor sync --user USER`` (provision on demand) and ``reactor explain USER``.

Both find the person in Entra (object id, userPrincipalName or mail), read the configured groups and
the groups nested in them fresh from Graph, and plan that one user as the engine does. ``sync --user``
prints the plan, then applies it (``--dry-run``: writes nothing, neither in AskCody nor in the store)
and the outcome of each operation. ``explain`` writes nothing: it says what AskCody should hold for
the person and why (the groups and nesting paths that put them in scope, or why they are out), what
AskCody holds now and the difference, the recent changes applied for them and their dead letters.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from reactor.commands import _json, _out, opened
from reactor.config import Settings
from reactor.domain.operations import EnsureGroup, Operation, as_json
from reactor.errors import ReactorError
from reactor.store import Store
from reactor.sync.engine import SyncEngine
from reactor.sync.explain import Person, entra_facts, entra_line, explanation, find_person, reasons, scope_paths

EXIT_OK, EXIT_FAILURE = 0, 1
SYNC_USER_CAUSE = "reactor sync --user"


def _print_plan(engine: SyncEngine, p: Person, outcomes: Mapping[int, str] | None = None) -> None:
    ops = p.plan.operations
    _out(f"Plan: {len(ops)} operations" + ("" if ops else " (AskCody is in line)"))
    for i, op in enumerate(ops):
        prefix = f"{outcomes[i]:<12}" if outcomes is not None else "-"
        _out(f"  {prefix} {engine.readable(op, p.who)}")


def _op_json(engine: SyncEngine, op: Operation, who: str, outcome: str) -> dict[str, Any]:
    return dict(as_json(op), readable=engine.readable(op, who), outcome=outcome)


# reactor sync --user ------------------------------------------------------------------------------
async def sync_user_command(settings: Settings, query: str, *, dry_run: bool, as_json: bool) -> int:
    """``reactor sync --user USER [--dry-run] [--json]``: plan and apply one person now."""
    async with opened(settings) as (store, clients):
        assert clients is not None
        engine = SyncEngine(settings, store, clients.reader, clients.scim)
        p = await find_person(engine, store, query)
        if p is None:
            sys.stderr.write(f"reactor: no Entra user with object id, userPrincipalName or mail {query!r}\n")
            return EXIT_FAILURE
        group_names = await engine.group_names(p.plan.paths.keys())
        if not as_json:
            _out(entra_line(p))
            _print_scope(p, settings, group_names)
        if dry_run:
            if as_json:
                _json(_sync_json(engine, p, group_names, ["planned"] * len(p.plan.operations), dry_run=True))
            else:
                _print_plan(engine, p)
                _out("Dry run: nothing applied")
            return EXIT_OK
        if not as_json:
            _print_plan(engine, p)
        outcomes, error = await _apply(engine, store, p)
        dead = [d.id for d in await store.dead_letters() if d.kind == "user" and d.object_id == p.entra_id]
        if as_json:
            _json(dict(_sync_json(engine, p, group_names, outcomes, dry_run=False), error=error, dead_letters=dead))
        else:
            _out("Applied:" if p.plan.operations else "Nothing to apply")
            for op, outcome in zip(p.plan.operations, outcomes, strict=True):
                _out(f"  {outcome:<12} {engine.readable(op, p.who)}")
            if error:
                _out(f"Failed: {error}" + (f" (dead letter {', '.join(map(str, dead))})" if dead else ""))
        return EXIT_OK if error is None else EXIT_FAILURE


async def _apply(engine: SyncEngine, store: Store, p: Person) -> tuple[list[str], str | None]:
    """Keep the person's memberships as Graph holds them now, apply the plan; each operation's
    outcome and the error, if any."""
    stored = await store.groups_of(p.entra_id)
    for gid, uids in sorted(p.direct.items()):
        if (p.entra_id in uids) != (gid in stored):
            added = [p.entra_id] if p.entra_id in uids else []
            await store.update_members(gid, added, [] if added else [p.entra_id])
    before = {d.id for d in await store.dead_letters()}
    try:
        applied = await engine.apply(p.plan, cause=SYNC_USER_CAUSE)
    except ReactorError as exc:
        return ["not applied"] * len(p.plan.operations), f"{type(exc).__name__}: {exc}"
    fresh = [d for d in await store.dead_letters() if d.id not in before]
    # The groups are ensured first (a failure there raises); the rest is applied in order until one fails.
    outcomes = ["applied" if op in applied or isinstance(op, EnsureGroup) else "failed" for op in p.plan.operations]
    return outcomes, (fresh[0].error if fresh else None)


def _print_scope(p: Person, settings: Settings, group_names: Mapping[str, str]) -> None:
    paths = scope_paths(p, settings, group_names)
    if p.in_scope:
        _out("In scope through:")
        for path in paths:
            _out(f"  {path['askcody_group']} (grants {path['grants']}): {path['path_text']}")
    else:
        _out("Out of scope: " + "; ".join(reasons(p, settings)))


def _sync_json(
    engine: SyncEngine, p: Person, group_names: Mapping[str, str], outcomes: list[str], *, dry_run: bool
) -> dict[str, Any]:
    return {
        "query": p.query, "entra_id": p.entra_id, "entra": entra_facts(p.user), "in_scope": p.in_scope,
        "groups": scope_paths(p, engine.settings, group_names), "dry_run": dry_run,
        "operations": [_op_json(engine, op, p.who, o) for op, o in zip(p.plan.operations, outcomes, strict=True)],
    }


async def explain_command(settings: Settings, query: str, *, as_json: bool) -> int:
    """``reactor explain USER [--json]``: what AskCody should hold for this person, and why."""
    async with opened(settings) as (store, clients):
        assert clients is not None
        engine = SyncEngine(settings, store, clients.reader, clients.scim)
        p = await find_person(engine, store, query)
        if p is None:
            sys.stderr.write(f"reactor: no Entra user with object id, userPrincipalName or mail {query!r}\n")
            return EXIT_FAILURE
        report = await explanation(engine, store, p)
    _json(report) if as_json else _print_explanation(report)
    return EXIT_OK


def _state_text(state: Mapping[str, Any] | None, *, absent: str) -> str:
    if state is None:
        return absent
    shown = ", ".join(
        f"{k}={state[k]!r}" for k in ("user_name", "external_id", "display_name", "given_name", "family_name",
                                      "email", "cost_center") if k in state
    )
    groups = ", ".join(state["groups"]) or "none"
    return f"{'active' if state['active'] else 'INACTIVE'}; {shown}; groups: {groups}"


def _print_explanation(r: Mapping[str, Any]) -> None:
    _out(f"{r['who']} (Entra id {r['entra_id']})")
    _out(r["entra_line"])
    scope = "in scope" if r["in_scope"] else "OUT OF SCOPE"
    _out(f"AskCody access: {r['access']} ({scope}): {'; '.join(r['reasons'])}")
    for g in r["groups"]:
        depth = f", nested {g['depth']} deep" if g["depth"] else ", direct member"
        _out(f"  {g['askcody_group']} (grants {g['grants']}{depth}): {g['path_text']}")
    _out("Expected in AskCody: " + _state_text(r["expected"], absent="no user"))
    actual = r["actual"]
    held = _state_text(actual, absent="no user")
    _out(f"AskCody holds now: {held}" + (f" (SCIM id {actual['scim_id']})" if actual else ""))
    if r["difference"]:
        _out("Difference (what a sync would do):")
        for line in r["difference"]:
            _out(f"  - {line}")
    else:
        _out("Difference: none, AskCody is in line")
    _out("Recent changes:" if r["recent_changes"] else "Recent changes: none recorded")
    for c in r["recent_changes"]:
        _out(f"  {c['at']}  {c['what']}  (cause: {c['cause']})")
    _out("Dead letters:" if r["dead_letters"] else "Dead letters: none")
    for d in r["dead_letters"]:
        _out(f"  {d['id']}  {d['at']}  {d['error']}  (cause: {d['cause']})")
