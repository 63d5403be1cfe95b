"""The explain view's pages on the admin listener (``/explain?user=…``): the report of
:func:`reactor.sync.explain.explain` as HTML, on the status page's styles; every value escaped."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from reactor.statuspage import CSS, DEAD_LETTER_HINT, STATE_FIELDS, _e, _pill, _table, _utc, search_form


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · AskCody Entra reactor</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>AskCody Entra reactor</h1>
<span class="meta"><a href="./">status page</a></span>
</header>
<main>
<section>
{body}
</section>
</main>
<footer><a href="./">status page</a> · <a href="status.json">/status.json</a></footer>
</body>
</html>
"""


def render_explain_problem(message: str, query: str) -> str:
    """The explain page when there is nothing to explain: the message and the search form again."""
    return _page("Explain a person", f'<h2>Explain a person</h2><p id="problem">{_e(message)}</p>{search_form(query)}')


def _state_cell(state: Mapping[str, Any] | None, key: str) -> str:
    if state is None:
        return '<span class="muted">no user</span>' if key == "user_name" else ""
    if key == "active":
        return _e("active" if state.get("active") else "INACTIVE")
    return _e(state.get(key))


def render_explanation(r: Mapping[str, Any], now: float | None = None) -> str:
    """``reactor explain``'s report as a page: the same facts as the command's screen, every value escaped."""
    now = time.time() if now is None else now
    scope = "in scope" if r["in_scope"] else "OUT OF SCOPE"
    access_kind = {"active": "ok", "inactive": "warn"}.get(str(r["access"]), "bad")
    group_rows = [
        [_e(g["askcody_group"]), _e(g["grants"]), _e(f"nested {g['depth']} deep" if g["depth"] else "direct member"),
         _e(g["path_text"])]
        for g in r["groups"]
    ]
    expected, actual = r["expected"], r["actual"]
    state_rows = []
    for key in STATE_FIELDS:
        want, have = _state_cell(expected, key), _state_cell(actual, key)
        mark = '<span class="diff">differs</span>' if want != have and (expected or actual) else ""
        state_rows.append([_e(key), want, have, mark])
    state_rows.append([
        "groups", _e(", ".join(expected["groups"]) or "none") if expected else "",
        _e(", ".join(actual["groups"]) or "none") if actual else "",
        '<span class="diff">differs</span>' if (expected or {}).get("groups") != (actual or {}).get("groups") else "",
    ])
    held = f" (SCIM id <code>{_e(actual['scim_id'])}</code>)" if actual else ""
    diff_rows = [[_e(line)] for line in r["difference"]]
    change_rows = [[_e(c["at"]), _e(c["what"]), _e(c["cause"])] for c in r["recent_changes"]]
    dead_rows = [[_e(d["id"]), _e(d["at"]), _e(d["error"]), _e(d["cause"])] for d in r["dead_letters"]]
    body = f"""<h2>Explain a person</h2>
{search_form(str(r["query"]))}
</section>
<section>
<h2 id="who">{_e(r["who"])} <span class="count">(Entra id <code>{_e(r["entra_id"])}</code>)</span></h2>
<p id="entra">{_e(r["entra_line"])}</p>
<p id="access">AskCody access: {_pill(access_kind, str(r["access"]))} ({_e(scope)}): {_e("; ".join(r["reasons"]))}</p>
{_table("paths", ["AskCody group", "grants", "depth", "path"], group_rows, "in no configured group")}
</section>
<section>
<h2>Expected and held in AskCody{held}</h2>
{_table("state", ["attribute", "expected", "AskCody holds now", ""], state_rows, "")}
</section>
<section>
<h2>Difference <span class="count">(what a sync would do)</span></h2>
{_table("difference", ["operation"], diff_rows, "none, AskCody is in line")}
</section>
<section>
<h2>Recent changes <span class="count">(last {len(change_rows)})</span></h2>
{_table("personchanges", ["when", "what", "cause"], change_rows, "none recorded")}
</section>
<section>
<h2>Dead letters <span class="count">({len(dead_rows)})</span></h2>
{_table("persondeadletters", ["id", "when", "error", "cause"], dead_rows, "none")}
{DEAD_LETTER_HINT if dead_rows else ""}
<p class="muted">Read {_e(_utc(now))}; the same report as <code>reactor explain --json</code>.</p>"""
    return _page(f"Explain {r['who']}", body)
