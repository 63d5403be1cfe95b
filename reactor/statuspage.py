"""The status page for people: one self-contained HTML document, no external assets."""

from __future__ import annotations

import html
import time
from typing import Any


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    d = time.time() - ts
    if d < 120:
        return f"{d:.0f} s ago"
    if d < 7200:
        return f"{d / 60:.0f} min ago"
    return f"{d / 3600:.1f} h ago"


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "expired"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render(status: dict[str, Any], ready: bool, checks: dict[str, dict[str, Any]]) -> str:
    """Render the status snapshot as HTML that refreshes itself every 5 seconds."""
    rows_checks = "".join(
        f'<tr><td>{_e(n)}</td><td class="{"ok" if c["ok"] else "bad"}">{"ok" if c["ok"] else "failing"}</td>'
        f"<td>{_e(c['reason'])}</td></tr>"
        for n, c in checks.items()
    )
    subs = status.get("subscriptions", [])
    rows_subs = "".join(
        f"<tr><td>{_e(s['resource'])}</td><td><code>{_e(s['id'])}</code></td>"
        f"<td>{_e(_duration(s['expires_in_seconds']))}</td></tr>"
        for s in subs
    ) or '<tr><td colspan="3">no subscription</td></tr>'
    backlog = status.get("backlog", {})
    changes = status.get("recent_changes", [])
    rows_changes = "".join(
        f"<tr><td>{_e(_ago(c.get('at')))}</td><td>{_e(c.get('who') or c.get('entra_id'))}</td>"
        f"<td>{_e(c.get('what'))}</td><td>{_e(c.get('why'))}</td></tr>"
        for c in changes
    ) or '<tr><td colspan="4">nothing applied yet</td></tr>'
    dead = status.get("dead_letters", [])
    rows_dead = "".join(
        f"<tr><td>{_e(d['id'])}</td><td>{_e(d['kind'])} {_e(d['object_id'])}</td><td>{_e(d['error'])}</td>"
        f"<td>{_e(_ago(d['created_at']))}</td></tr>"
        for d in dead
    ) or '<tr><td colspan="4">none</td></tr>'
    state = "Ready" if ready else "Not ready"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>AskCody Entra reactor: {_e(state)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.6rem; }}
table {{ border-collapse: collapse; min-width: 40rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; font-size: .9rem; }}
.ok {{ color: #0a7a2f; font-weight: 600; }} .bad {{ color: #b3261e; font-weight: 600; }}
.badge {{ padding: .2rem .6rem; border-radius: .4rem; color: white; background: {"#0a7a2f" if ready else "#b3261e"}; }}
</style></head>
<body>
<h1>AskCody Entra reactor <span class="badge" id="state">{_e(state)}</span></h1>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>state</th><th>reason</th></tr>{rows_checks}</table>
<h2>Subscriptions</h2>
<table id="subscriptions"><tr><th>resource</th><th>id</th><th>expires in</th></tr>{rows_subs}</table>
<h2>Backlog</h2>
<p id="backlog">{_e(backlog.get("objects", 0))} objects pending ({_e(backlog.get("journal_items", 0))} journaled
notifications{", oldest " + _e(_ago(backlog.get("oldest_received_at"))) if backlog.get("oldest_received_at") else ""});
{_e(status.get("failures", 0))} failed attempts since start.</p>
<h2>Recent changes</h2>
<table id="changes"><tr><th>when</th><th>who</th><th>what</th><th>why</th></tr>{rows_changes}</table>
<h2>Dead letters</h2>
<table id="deadletters"><tr><th>id</th><th>object</th><th>error</th><th>when</th></tr>{rows_dead}</table>
</body></html>
"""
