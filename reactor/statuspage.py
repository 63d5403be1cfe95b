"""The status page for people: one self-contained HTML document (inline CSS, no script, no external
asset, so it works offline) that refreshes itself every few seconds."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REFRESH_SECONDS = 5

CSS = """
:root { --fg: #1d2125; --muted: #5c6670; --line: #dfe3e8; --bg: #f6f7f9; --card: #fff;
        --ok: #11773a; --ok-bg: #e3f4e8; --warn: #8a5a00; --warn-bg: #fff2d6; --bad: #b3261e; --bad-bg: #fde7e5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 1rem; flex-wrap: wrap; padding: 1rem 2rem;
         background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.25rem; margin: 0; }
header .meta { color: var(--muted); margin-left: auto; }
main { padding: 0 2rem 1rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem;
          margin-top: 1rem; min-width: 0; overflow-x: auto; }
.grid { display: grid; gap: 0 1rem; }
.grid.halves { grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
.grid.wide-narrow { grid-template-columns: minmax(0, 2.4fr) minmax(260px, 1fr); }
@media (max-width: 900px) { .grid.wide-narrow { grid-template-columns: 1fr; } }
#changes td:first-child, #deadletters td:last-child, #subscriptions td:nth-child(3) { white-space: nowrap; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
h2 .count { color: var(--muted); font-weight: normal; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: .8rem; margin-top: 1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .7rem 1rem; }
.card .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 1.5rem; font-weight: 600; }
.card .note { color: var(--muted); font-size: .85rem; }
.card.bad { border-color: var(--bad); } .card.warn { border-color: #e0b34d; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
tr:last-child td { border-bottom: 0; }
td.empty { color: var(--muted); font-style: italic; }
code { font: .85em ui-monospace, "DejaVu Sans Mono", monospace; }
.pill { display: inline-block; padding: .05rem .55rem; border-radius: 999px; font-weight: 600; font-size: .8rem; }
.pill.ok { color: var(--ok); background: var(--ok-bg); }
.pill.warn { color: var(--warn); background: var(--warn-bg); }
.pill.bad { color: var(--bad); background: var(--bad-bg); }
.badge { font-size: 1rem; padding: .2rem .8rem; }
.muted { color: var(--muted); }
footer { color: var(--muted); padding: 0 2rem 2rem; }
a { color: inherit; }
form.search { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
form.search input { flex: 1 1 22rem; font: inherit; padding: .35rem .6rem; border: 1px solid var(--line); border-radius: 6px; }
form.search button { font: inherit; padding: .35rem .9rem; border: 1px solid var(--line); border-radius: 6px;
                     background: var(--bg); }
.diff { color: var(--warn); font-weight: 600; }
progress { width: 100%; height: .8rem; }
"""


DEAD_LETTER_HINT = (
    '<p class="muted">Inspect with <code>reactor deadletters list</code>; '
    "re-run with <code>reactor deadletters replay ID</code>.</p>"
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _utc(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else ""


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return ""
    d = max(0.0, now - ts)
    if d < 120:
        return f"{d:.0f} s ago"
    if d < 7200:
        return f"{d / 60:.0f} min ago"
    if d < 172800:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} days ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds <= 0:
        return "expired"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(ts: float | None, now: float) -> str:
    """Relative time, with the exact UTC time as a tooltip."""
    return f'<span title="{_e(_utc(ts))}">{_e(_ago(ts, now))}</span>' if ts else ""


def _pill(kind: str, text: str) -> str:
    return f'<span class="pill {kind}">{_e(text)}</span>'


def _table(table_id: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of already escaped cells; one row saying ``empty`` when there is none."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{_e(empty)}</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _card(label: str, value: str, note: str = "", state: str = "") -> str:
    return (
        f'<div class="card {state}"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
    )


def _subscriptions(status: Mapping[str, Any], now: float) -> tuple[list[list[str]], float | None]:
    """Rows for the subscriptions table (from the manager's view when there is one) and the earliest expiry."""
    health = status.get("subscription_health") or {}
    rows: list[list[str]] = []
    earliest: float | None = None
    if health.get("subscriptions"):
        for s in health["subscriptions"]:
            remaining = s.get("seconds_to_expiry")
            if remaining is not None:
                earliest = remaining if earliest is None else min(earliest, remaining)
            state = _pill("warn", s["degraded"]) if s.get("degraded") else _pill("ok", "live")
            error = f'<div class="muted">{_e(s["last_error"])}</div>' if s.get("last_error") else ""
            rows.append([
                _e(s.get("resource")), f"<code>{_e(s.get('subscription_id') or 'none')}</code>",
                _e(_duration(remaining)), _e(_utc(s.get("expires_at"))), state + error,
            ])
        return rows, earliest
    for s in status.get("subscriptions", []):
        remaining = s.get("expires_in_seconds")
        if remaining is not None:
            earliest = remaining if earliest is None else min(earliest, remaining)
        state = _pill("ok", "live") if remaining is not None and remaining > 0 else _pill("bad", "expired")
        rows.append([
            _e(s.get("resource")), f"<code>{_e(s.get('id'))}</code>", _e(_duration(remaining)),
            _e(_utc(s.get("expires_at"))), state,
        ])
    return rows, earliest


def _replicas(status: Mapping[str, Any], now: float) -> tuple[str, list[list[str]]]:
    """The line saying who leads, and one row per live replica (several on a shared PostgreSQL store)."""
    view = status.get("replicas") or {}
    if not view:
        return "", []
    if not view.get("shared"):
        return "Single node (SQLite): this replica leads.", []
    me, leader = view.get("replica"), view.get("leader")
    alive = int(view.get("alive", 0) or 0)
    if leader is None:
        line = f"No replica leads at the moment; {alive} alive."
    elif view.get("leading"):
        line = f"This replica ({me}) leads (epoch {view.get('epoch')}); {alive} alive."
    else:
        line = f"{leader} leads (epoch {view.get('epoch')}); this is {me}; {alive} alive."
    rows = [
        [f"<code>{_e(r.get('id'))}</code>", _e(r.get("host", "")), _e(r.get("pid", "")),
         _pill("ok", "leader") if r.get("id") == leader else "", _when(r.get("started_at"), now)]
        for r in view.get("replicas", [])
    ]
    return line, rows


def _reconcile(status: Mapping[str, Any], now: float) -> str:
    """The running reconcile's phase, count, rate and time left (with a bar when the total is known),
    or the outcome of the last one."""
    progress = status.get("reconcile") or {}
    if progress.get("running"):
        total, done = progress.get("total"), progress.get("done") or 0
        bar = f'<progress id="reconcile-bar" max="{_e(total)}" value="{_e(done)}"></progress>' if total else ""
        return f'<p id="reconcile">{_e(progress.get("round"))}: {_e(progress.get("summary"))}</p>{bar}'
    if progress.get("finished_at"):
        return f'<p id="reconcile">Idle; {_e(progress.get("summary"))}, {_when(progress["finished_at"], now)}.</p>'
    return '<p id="reconcile">Idle; no reconcile has run here since start.</p>'


def render(status: Mapping[str, Any], ready: bool, checks: Mapping[str, Mapping[str, Any]]) -> str:
    """Render the status snapshot (``Service.status()``) and the readiness checks as one HTML page."""
    now = float(status.get("now") or time.time())
    backlog = status.get("backlog", {})
    changes = status.get("recent_changes", [])
    dead = status.get("dead_letters", [])
    engine = status.get("engine") or {}
    failures = int(status.get("failures", 0) or 0)

    check_rows = []
    for name, c in checks.items():
        if c.get("ok"):
            state = _pill("ok", "ok")
        else:
            state = _pill("bad", "failing") if c.get("fatal", True) else _pill("warn", "warning")
        effect = "blocks readiness" if c.get("fatal", True) else "reported only"
        check_rows.append([_e(name), state, f'<span class="muted">{effect}</span>', _e(c.get("reason"))])

    sub_rows, earliest = _subscriptions(status, now)
    replicas_line, replica_rows = _replicas(status, now)

    change_rows = [
        [_when(c.get("at"), now), _e(c.get("who") or c.get("entra_id")), _e(c.get("what")), _e(c.get("why"))]
        for c in changes
    ]
    dead_rows = [
        [_e(d.get("id")), f"{_e(d.get('kind'))} <code>{_e(d.get('object_id'))}</code>", _e(d.get("error")),
         _e(d.get("attempts", "")), _when(d.get("created_at"), now)]
        for d in dead
    ]

    problems: list[list[str]] = []
    if engine.get("last_reconcile_error"):
        problems.append(["reconcile", _e(engine["last_reconcile_error"])])
    for s in (status.get("subscription_health") or {}).get("subscriptions", []):
        if s.get("last_error"):
            problems.append([f"subscription {_e(s.get('resource'))}", _e(s["last_error"])])
    for entra_id, text in (engine.get("attribute_failures") or {}).items():
        problems.append([f"user <code>{_e(entra_id)}</code>", _e(text)])
    for name, c in checks.items():
        if not c.get("ok") and name != "dead_letters":
            problems.append([f"check {_e(name)}", _e(c.get("reason"))])

    pending = int(backlog.get("objects", 0) or 0)
    age = backlog.get("oldest_pending_age_seconds")
    max_age = backlog.get("max_age_seconds")
    backlog_state = "bad" if age is not None and max_age and age > max_age else ""
    expiry_state = "warn" if earliest is None or earliest < 86400 else ""
    state_text = "Ready" if ready else "Not ready"
    started = status.get("started_at")
    last_reconcile = engine.get("last_reconcile_at")

    facts = [f"updated {_utc(now)}"]
    if started:
        facts.append(f"up since {_utc(started)}")
    if last_reconcile:
        facts.append(f"last reconcile {_ago(last_reconcile, now)}")
    facts.append(f"refreshes every {REFRESH_SECONDS} s")
    meta = " · ".join(facts)
    backlog_text = (
        f"{pending} objects pending ({backlog.get('journal_items', 0)} journaled notifications"
        + (f", oldest waiting {_duration(age)}" if age is not None else "")
        + f"); {failures} failed attempts and {status.get('units_handled', 0)} units handled since start."
    )

    cards = "".join([
        _card("Backlog", f"{pending} pending",
              f"oldest waiting {_duration(age)}" if age is not None else "nothing waiting", backlog_state),
        _card("Changes applied", str(len(changes)),
              f"last {_ago(changes[0].get('at'), now)}" if changes else "none yet"),
        _card("Failed attempts", str(failures), "since start, retried automatically", "warn" if failures else ""),
        _card("Dead letters", str(len(dead)), "need a person" if dead else "none", "bad" if dead else ""),
        _card("Next expiry", _duration(earliest) if earliest is not None else "none",
              "earliest subscription", expiry_state),
    ])

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{_e(state_text)} · AskCody Entra reactor</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>AskCody Entra reactor</h1>
<span class="pill badge {"ok" if ready else "bad"}" id="state">{_e(state_text)}</span>
<span class="meta">{_e(meta)}</span>
</header>
<main>
<div class="cards" id="summary">{cards}</div>

<div class="grid wide-narrow">
<section>
<h2>Subscriptions <span class="count">({len(sub_rows)})</span></h2>
{_table("subscriptions", ["resource", "id", "expires in", "expires at", "state"], sub_rows, "no subscription")}
</section>
<section>
<h2>Backlog</h2>
<p id="backlog">{_e(backlog_text)}</p>
<h2>Reconcile</h2>
{_reconcile(status, now)}
</section>
</div>

<section>
<h2>Recent changes applied <span class="count">(last {len(change_rows)})</span></h2>
{_table("changes", ["when", "who", "what", "why"], change_rows, "nothing applied yet")}
</section>

<div class="grid halves">
<section>
<h2>Failures <span class="count">({len(problems)})</span></h2>
{_table("failures", ["where", "error"], problems, "no current failure")}
</section>
<section>
<h2>Dead letters <span class="count">({len(dead_rows)})</span></h2>
{_table("deadletters", ["id", "object", "error", "attempts", "when"], dead_rows, "none")}
{DEAD_LETTER_HINT if dead_rows else ""}
</section>
</div>

<section>
<h2>Explain a person</h2>
{search_form("")}
</section>

<section>
<h2>Readiness checks</h2>
{_table("checks", ["check", "state", "effect", "reason"], check_rows, "no check")}
</section>

<section>
<h2>Replicas <span class="count">({len(replica_rows) or 1})</span></h2>
<p id="leader">{_e(replicas_line)}</p>
{_table("replicas", ["replica", "host", "pid", "role", "joined"], replica_rows, "") if replica_rows else ""}
</section>
</main>
<footer><a href="explain">explain a person</a> ·
<a href="readyz">/readyz</a> · <a href="metrics">/metrics</a> · <a href="status.json">/status.json</a></footer>
</body>
</html>
"""


# The explain view ---------------------------------------------------------------------------------
STATE_FIELDS = ("user_name", "external_id", "display_name", "given_name", "family_name", "email", "cost_center", "active")


def search_form(value: str) -> str:
    """A GET form to ``explain?user=…`` (relative, like the footer's links)."""
    return (
        '<form class="search" id="search" method="get" action="explain" role="search">'
        '<label for="user">UPN, object id or e-mail</label>'
        f'<input id="user" name="user" type="search" maxlength="320" required value="{_e(value)}" '
        'placeholder="alice@contoso.com">'
        '<button type="submit">Explain</button></form>'
    )
