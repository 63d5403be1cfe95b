"""Fuzzing the public endpoints over real HTTP: generators of requests, each with what it must cause,
and the checks of what the service answered and did. Used by ``tests/fuzz`` (a short run) and by
``python -m bench.fuzz`` (the long one).

A :class:`Probe` is one request (method, path, query string, headers, body, chunked or not) and its
expectation, written from the contract (docs/contract.md, "HTTP endpoints"), not from the intake:

- the statuses it may get (``allowed``) and, for a clean notification, the one it must get
  (``must``: 202 for a well-formed body of at most ``MAX_ITEMS`` items sent as ``application/json``);
- ``effects``: the journal entries ``(kind, object id, change)`` its valid items cause when it is
  answered 202, and nothing when it is answered anything else. A valid item names one of our
  subscriptions, carries that subscription's clientState, our tenant, and (notifications) a user or
  group by GUID, or (lifecycle) a lifecycle event. Every mutated item lacks one of these and must
  cause nothing, whatever the status of its request;
- for ``?validationToken=``: 200 with the token echoed as ``text/plain`` (or 400 for a token the
  service refuses), never a journal entry.

:class:`Ledger` checks each answer as it comes and adds up the effects owed; :func:`effect_violations`
compares them with what the handler received and what is left in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import hypothesis
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reactor.app import create_app
from reactor.config import Settings, with_overrides
from reactor.domain.work import WorkUnit
from reactor.service import Service
from reactor.store import SQLiteStore, SubscriptionRecord
from tests.support.eventually import eventually
from tests.support.servers import serve_in_thread

TENANT = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
SUBSCRIPTIONS = {
    "7c9e6679-7425-40de-944b-e07fc1f90ae7": "users-7Hq2xkL9/Zq+Rw==",
    "16fd2706-8baf-433b-82eb-8c7fada847da": "groups-mP4v~Ab3_Kk8Tn0=",
}
SUB_USERS, SUB_GROUPS = SUBSCRIPTIONS
MAX_ITEMS = 1000
"""``server.max_items_per_request``'s default: a body with more items may be answered 413."""
MAX_BODY_BYTES = 1_048_576
"""``server.max_body_bytes``'s default."""

Effect = tuple[str, str, str]
"""A journal entry as the handler sees it: ``(kind, object id, change type or lifecycle event)``."""

JSON_TYPES = ("application/json", "application/json; charset=utf-8")
"""What Graph sends: a body sent so must be accepted."""
OTHER_TYPES = (
    None, "", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "APPLICATION/JSON", "Application/Json; Charset=UTF-8",
    "application/json;charset=utf-8", "application/json; charset=iso-8859-1", "text/json",
    "application/merge-patch+json", "application/jsonx", "application/json, text/plain", "*/*", ";", "json",
)
"""Anything else: accepted (202) or refused with 415, the intake's choice."""

WEBHOOK_CODES = frozenset({202, 400, 413, 415})
HANDSHAKE_CODES = frozenset({200, 400})
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
KNOWN_KEYS = frozenset(
    {"subscriptionId", "clientState", "tenantId", "changeType", "resource", "resourceData", "lifecycleEvent"}
)


@dataclass
class Probe:
    """One request and what it must cause (see the module docstring)."""

    label: str
    method: str
    path: str
    allowed: frozenset[int]
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunked: bool = False
    must: int | None = None
    effects: Counter[Effect] = field(default_factory=Counter)
    token: str | None = None
    may_drop: bool = False
    """The server may close the connection instead of answering (a body over the size limit)."""


# --- values -------------------------------------------------------------------------------------

numbers = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12
)
not_strings = st.none() | st.booleans() | numbers | st.lists(
    scalars, max_size=3
) | st.dictionaries(st.text(max_size=8), scalars, max_size=3)
guids = st.uuids().map(str)


DEEP = re.compile(rb'"~deep:(\d+):([ld])~"')
"""A deep value stands in the document as this marker, replaced after serialization (encoders stop
at a few hundred levels)."""


def nested(depth: int, as_dict: bool) -> bytes:
    return (b'{"a":' * depth + b"0" + b"}" * depth) if as_dict else (b"[" * depth + b"0" + b"]" * depth)


deep_values = st.builds(lambda depth, d: f"~deep:{depth}:{'d' if d else 'l'}~", st.integers(2, 900), st.booleans())
"""Nested up to 900 levels: still JSON that any parser takes (orjson's limit is 1024)."""

bad_ids = st.one_of(
    st.sampled_from([".", "..", "/", "", " ", "me", "users", "null", "0", "../me", "%2e%2e", "*", "$ref", "delta", "\u0000"]),
    st.text(max_size=40).filter(lambda s: not _is_guid(s)),
    guids.map(lambda g: g[:-1]),
    guids.map(lambda g: g + "0"),
    guids.map(lambda g: g.replace("-", "_")),
    guids.map(lambda g: g + "/manager"),
    guids.map(lambda g: "../" + g),
    guids.map(lambda g: g.replace("a", "g").replace("b", "z")).filter(lambda s: not _is_guid(s)),
    st.integers(65, 20_000).map(lambda n: ("0123456789abcdef-" * (n // 17 + 1))[:n]),
)
"""Object ids that no GUID parser takes (not even in their lenient forms: braces, urn:uuid:, 32 hex)."""


def _is_guid(s: str) -> bool:
    try:
        uuid.UUID(s)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


# --- items --------------------------------------------------------------------------------------


_PICKS: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {}


def pick(draw: st.DrawFn, options: tuple[Any, ...]) -> Any:
    """One of ``options`` (the strategy built once per tuple: building strategies is what costs)."""
    strategy = _PICKS.get(options)
    if strategy is None:
        strategy = _PICKS[options] = st.sampled_from(options)
    return draw(strategy)


NOISE = (
    ("subscriptionExpirationDateTime", "2026-12-04T13:00:00.0000000+00:00"),
    ("@odata.type", "#Microsoft.Graph.changeNotification"),
    ("sequenceNumber", 7),
    ("encryptedContent", None),
    ("lifecycleNotificationUrl", "https://reactor.contoso.example/lifecycle"),
    ("resourceDataV2", {"id": "not-read", "nested": [1, 2.5, None, True, {"k": "v"}]}),
    ("", ""),
    ("Zoë's \"field\"", "ünïcødé ☃ 東京 שלום"),
    ("subscriptionid", "not-this-one"),
    ("ClientState", "not-this-one"),
)
"""Fields Graph may add, or that nobody reads (some differ from a checked one only in case): they
change nothing."""
_NOISE_POOL = st.lists(st.sampled_from(NOISE), max_size=3, unique_by=lambda kv: kv[0])
_NOISE_JSON = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in KNOWN_KEYS), json_values, max_size=2)


@st.composite
def noise(draw: st.DrawFn) -> dict[str, Any]:
    """Extra fields for a valid item: mostly from :data:`NOISE`, sometimes arbitrary JSON or deeply nested."""
    how = pick(draw, ("pool",) * 6 + ("json", "deep"))
    if how == "pool":
        return dict(draw(_NOISE_POOL))
    if how == "json":
        return draw(_NOISE_JSON)
    return {"extensions": draw(deep_values)}


def _case(draw: st.DrawFn, s: str) -> str:
    return s.upper() if draw(st.booleans()) else s


@st.composite
def notification_item(draw: st.DrawFn) -> tuple[dict[str, Any], Effect]:
    """A change notification as Graph sends it (in one of the forms it takes), and its effect."""
    sub = pick(draw, (SUB_USERS, SUB_GROUPS))
    kind = pick(draw, ("user", "group"))
    oid = draw(guids)
    change = pick(draw, ("created", "updated", "deleted"))
    head = "Users" if kind == "user" else "Groups"
    item: dict[str, Any] = {"subscriptionId": _case(draw, sub), "changeType": change, "clientState": SUBSCRIPTIONS[sub]}
    shown = _case(draw, oid)
    form = pick(draw, ("both", "resource", "resourceData"))
    if form != "resourceData":
        item["resource"] = pick(draw, ("{}/{}", "{}/{}", "/{}/{}")).format(head if draw(st.booleans()) else head.lower(), shown)
    if form != "resource":
        odata = "#Microsoft.Graph.User" if kind == "user" else "#Microsoft.Graph.Group"
        item["resourceData"] = {
            "@odata.type": _case(draw, odata), "@odata.id": f"{head}/{shown}", "id": shown, "organizationId": TENANT,
        }
    item["tenantId"] = _case(draw, TENANT)
    item.update(draw(NOISES))
    return item, (kind, oid, change)


@st.composite
def lifecycle_item(draw: st.DrawFn) -> tuple[dict[str, Any], Effect]:
    """A lifecycle notification as Graph sends it, and its effect."""
    sub = pick(draw, (SUB_USERS, SUB_GROUPS))
    event = pick(draw, LIFECYCLE_EVENTS)
    item: dict[str, Any] = {
        "subscriptionId": _case(draw, sub), "lifecycleEvent": event, "clientState": SUBSCRIPTIONS[sub],
        "tenantId": _case(draw, TENANT),
    }
    item.update(draw(NOISES))
    return item, ("lifecycle", sub, event)


NOISES = noise()
ROUTES = ("notifications", "lifecycle")
ITEMS = {"notifications": notification_item(), "lifecycle": lifecycle_item()}


def _wrong_states(sub: str) -> st.SearchStrategy[Any]:
    state = SUBSCRIPTIONS[sub]
    other = next(s for k, s in SUBSCRIPTIONS.items() if k != sub)
    return st.one_of(
        st.sampled_from([other, state.upper(), state[:-1], state + " ", " " + state, state + "\u0000", "", state[1:],
                         state.replace("=", "=\u200b")]),
        st.text(max_size=40).filter(lambda s: s != state),
        not_strings,
        st.integers(0, len(state) - 1).map(lambda i: state[:i] + chr(ord(state[i]) ^ 1) + state[i + 1 :]),
    )


WRONG_STATES = {sub: _wrong_states(sub) for sub in SUBSCRIPTIONS}
UNKNOWN_SUBSCRIPTIONS = guids | bad_ids | st.sampled_from([SUB_USERS + " ", SUB_USERS[:-1], SUB_USERS + "0", " " + SUB_GROUPS])
WRONG_TENANTS = guids | st.sampled_from(["", "common", "organizations", TENANT + " ", TENANT[:-1]])
NOT_OBJECTS = json_values.filter(lambda v: type(v) is not dict) | deep_values
NO_EVENTS = st.just("") | not_strings
MUTATIONS = {
    "lifecycle": ("missing", "wrong_type", "client_state", "unknown_subscription", "tenant", "deep", "not_an_object",
                  "other_route", "lifecycle_event"),
    "notifications": ("missing", "wrong_type", "client_state", "unknown_subscription", "tenant", "deep", "not_an_object",
                      "other_route", "bad_id", "bad_id", "no_object"),
}


@st.composite
def mutated_item(draw: st.DrawFn, route: str) -> tuple[Any, str]:
    """A notification (or lifecycle) item that fails one of the checks, and how it was mutated."""
    item, _ = draw(ITEMS[route])
    sub = item["subscriptionId"].lower()
    how = pick(draw, MUTATIONS[route])
    if how == "missing":
        for key in pick(draw, (("subscriptionId",), ("clientState",), ("tenantId",), ("subscriptionId", "clientState"))):
            del item[key]
    elif how == "wrong_type":
        item[pick(draw, ("subscriptionId", "clientState", "tenantId"))] = draw(not_strings)
    elif how == "client_state":
        item["clientState"] = draw(WRONG_STATES[sub])
    elif how == "unknown_subscription":
        item["subscriptionId"] = draw(UNKNOWN_SUBSCRIPTIONS)
    elif how == "tenant":
        item["tenantId"] = draw(WRONG_TENANTS)
    elif how == "deep":
        item[pick(draw, ("subscriptionId", "clientState", "tenantId"))] = draw(deep_values)
    elif how == "not_an_object":
        return draw(NOT_OBJECTS), how
    elif how == "other_route":
        if route == "lifecycle":
            item.pop("lifecycleEvent")
            other, _ = draw(ITEMS["notifications"])
            item.update({k: other[k] for k in ("resource", "resourceData", "changeType") if k in other})
        else:
            item.pop("resource", None)
            item.pop("resourceData", None)
            item["lifecycleEvent"] = pick(draw, LIFECYCLE_EVENTS)
    elif how == "lifecycle_event":
        if draw(st.booleans()):
            del item["lifecycleEvent"]
        else:
            item["lifecycleEvent"] = draw(NO_EVENTS)
    elif how == "bad_id":
        bad = draw(bad_ids)
        if "resource" in item:
            item["resource"] = item["resource"].rsplit("/", 1)[0] + "/" + bad
        if "resourceData" in item:
            as_number = bad.isascii() and bad.isdigit() and len(bad) < 18 and draw(st.booleans())
            item["resourceData"]["id"] = int(bad) if as_number else bad
            item["resourceData"]["@odata.id"] = f"Users/{bad}"
    elif how == "no_object":
        item.pop("resource", None)
        item.pop("resourceData", None)
        choice = pick(draw, ("none", "head", "data"))
        if choice == "head":
            item["resource"] = pick(draw, ("Devices/", "Applications/", "servicePrincipals/", "", "/")) + draw(guids)
        elif choice == "data":
            item["resourceData"] = {"@odata.type": pick(draw, ("#Microsoft.Graph.Device", "", "User", "#microsoft.graph.userx")),
                                    "id": draw(guids)}
    return item, how


# --- bodies -------------------------------------------------------------------------------------


def _serialize(draw: st.DrawFn, doc: Any) -> bytes:
    body = _encode(draw, doc)
    return DEEP.sub(lambda m: nested(int(m[1]), m[2] == b"d"), body) if b"~deep:" in body else body


def _encode(draw: st.DrawFn, doc: Any) -> bytes:
    style = pick(draw, ("orjson", "orjson", "indent", "ascii", "spaced"))
    if style == "orjson":
        return orjson.dumps(doc)
    if style == "indent":
        return json.dumps(doc, indent=2, ensure_ascii=False).encode()
    if style == "ascii":
        return json.dumps(doc).encode()
    return b" \r\n\t" + json.dumps(doc, separators=(" , ", " : "), ensure_ascii=False).encode() + b"\n "


@st.composite
def notification_body(draw: st.DrawFn, route: str) -> tuple[bytes, Counter[Effect], int]:
    """``{"value": [...]}`` with valid and mutated items in any order, its effects and its item count."""
    valid = draw(VALID_LISTS[route])
    items: list[Any] = [i for i, _ in valid]
    for bad, _ in draw(MUTATED_LISTS[route]):
        items.insert(draw(st.integers(0, len(items))), bad)
    if pick(draw, (False,) * 12 + (True,)):
        # Many items: copies of one, the valid ones among them.
        filler = draw(FILLERS[route])
        count = pick(draw, (MAX_ITEMS - len(items), MAX_ITEMS + 1 - len(items), 50, 999, 1500, 3000))
        items = items + [filler] * max(count, 0)
    doc: dict[str, Any] = {"value": items}
    if draw(st.booleans()):
        doc["validationTokens"] = draw(TOKEN_LISTS)
    return _serialize(draw, doc), Counter(e for _, e in valid), len(items)


VALID_LISTS = {route: st.lists(ITEMS[route], max_size=4) for route in ROUTES}
MUTATED = {route: mutated_item(route) for route in ROUTES}
MUTATED_LISTS = {route: st.lists(MUTATED[route], max_size=4) for route in ROUTES}
FILLERS: dict[str, st.SearchStrategy[Any]] = {
    route: st.sampled_from([{}, 0, None, "x", []]) | MUTATED[route].map(lambda t: t[0]) for route in ROUTES
}
TOKEN_LISTS = st.lists(st.text(max_size=30), max_size=2)
BODIES = {route: notification_body(route) for route in ROUTES}


def _strict_json(body: bytes) -> bool:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        json.loads(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\xbc", b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80\x80"]
)


@st.composite
def malformed_body(draw: st.DrawFn, route: str) -> tuple[bytes, str]:
    """A body that is not a notification document at all: the whole request is refused (400)."""
    how = pick(draw, ("binary", "text", "empty", "not_object", "no_value", "invalid_utf8", "truncated", "too_deep", "trailing"))
    if how == "binary":
        body = draw(BINARY)
    elif how == "text":
        body = draw(TEXT).encode()
    elif how == "empty":
        body = pick(draw, (b"", b" ", b"\r\n", b"\x00"))
    elif how == "not_object":
        body = orjson.dumps(draw(NOT_DICTS))
    elif how == "no_value":
        doc = draw(OTHER_DOCS)
        if draw(st.booleans()):
            doc["value"] = draw(NOT_LISTS)
        body = orjson.dumps(doc)
    else:
        good, _, _ = draw(BODIES[route])
        if how == "invalid_utf8":
            at = draw(st.integers(0, len(good)))
            body = good[:at] + draw(invalid_utf8) + good[at:]
        elif how == "truncated":
            body = good[: draw(st.integers(0, max(len(good) - 1, 0)))]
        elif how == "too_deep":
            body = b'{"value": [' + b"[" * draw(st.integers(1100, 5000)) + b"]"
        else:
            body = good + pick(draw, (b"x", b"}", b",", b"{}", b"\x00", b"/*c*/"))
    # The check of the check: whatever was generated must not be JSON the contract calls well-formed.
    if _strict_json(body):
        doc = json.loads(body)
        if type(doc) is dict and type(doc.get("value")) is list:
            body = b"[" + body
    return body, how


BINARY = st.binary(max_size=400)
TEXT = st.text(max_size=200)
NOT_DICTS = json_values.filter(lambda v: type(v) is not dict)
NOT_LISTS = json_values.filter(lambda v: type(v) is not list)
OTHER_DOCS = st.dictionaries(st.text(max_size=10).filter(lambda k: k != "value"), json_values, max_size=3)
MALFORMED = {route: malformed_body(route) for route in ROUTES}

# --- requests -----------------------------------------------------------------------------------

HEADERS: tuple[dict[str, str], ...] = (
    {}, {}, {}, {"accept": "*/*"}, {"user-agent": "Microsoft-Graph-ChangeNotifications/1.0"},
    {"accept-encoding": "gzip, deflate, br"}, {"x-forwarded-for": "40.126.0.1, 10.0.0.4"}, {"client-request-id": TENANT},
    {"content-encoding": "identity"}, {"expect": ""}, {"cookie": "a=b"}, {"x-custom": "ünï"}, {"authorization": "Bearer x"},
    {"accept": "text/html", "accept-language": "da-DK", "cache-control": "no-cache"}, {"x-long": "v" * 6000},
)
_NOISE_HEADERS = st.sampled_from(HEADERS).map(dict)


def _query_noise(draw: st.DrawFn) -> str:
    """A query string without a validationToken (raw, possibly badly encoded)."""
    query: str = pick(draw, QUERY_NOISE)
    return query


QUERY_NOISE = ("",) * 10 + ("a=1", "token=", "&&", "%zz", "%ff%fe=%00", "x=" + "y" * 3000, "validationToken%3D=x", "=",
                           "validation%20Token=1", "api-version=2", "$top=1", "validationTokenX=1", "%00")
KINDS = ("notification",) * 24 + ("malformed",) * 8 + ("handshake",) * 5 + ("method",) * 2 + ("too_large",)


@st.composite
def webhook_probe(draw: st.DrawFn) -> Probe:
    path = pick(draw, ("/notifications", "/lifecycle"))
    route = path.strip("/")
    kind = pick(draw, KINDS)
    headers = draw(_NOISE_HEADERS)
    chunked = pick(draw, (False,) * 6 + (True,))
    if kind == "handshake":
        return handshake(draw, path, route, headers)
    if kind == "method":
        return Probe("wrong_method", pick(draw, ("GET", "PUT", "PATCH", "DELETE")), path, frozenset({404, 405}),
                     body=draw(BODIES[route])[0])
    content_type = pick(draw, JSON_TYPES * 8 + OTHER_TYPES)
    if content_type is not None:
        headers["content-type"] = content_type
    query = _query_noise(draw)
    if kind == "notification":
        body, effects, count = draw(BODIES[route])
        clean = content_type in JSON_TYPES and count <= MAX_ITEMS and len(body) <= MAX_BODY_BYTES
        return Probe(
            "notification" if count <= MAX_ITEMS else "many_items", "POST", path, WEBHOOK_CODES, query, headers, body, chunked,
            must=202 if clean else None, effects=effects,
        )
    if kind == "malformed":
        body, how = draw(MALFORMED[route])
        return Probe(f"malformed:{how}", "POST", path, WEBHOOK_CODES - {202}, query, headers, body, chunked)
    good, _, _ = draw(BODIES[route])
    pad = MAX_BODY_BYTES + pick(draw, (1, 100, 70_000))
    body = good[:-1] + b" " * (pad - len(good)) + good[-1:]
    return Probe("too_large", "POST", path, frozenset({413, 415}), query, headers, body, chunked,
                 must=413 if content_type in JSON_TYPES else None, may_drop=True)


def handshake(draw: st.DrawFn, path: str, route: str, headers: dict[str, str]) -> Probe:
    """Graph's validation request: the token comes back as text/plain; a body is ignored."""
    token = draw(TOKENS)
    query = "validationToken=" + pick(draw, ENCODINGS)(token)
    if draw(st.booleans()):
        query = pick(draw, ("a=1&", "", "validationToken2=z&")) + query
    headers["content-type"] = pick(draw, ("text/plain; charset=utf-8", "text/plain", "application/json"))
    body = b"" if draw(st.booleans()) else draw(BODIES[route])[0]
    return Probe("handshake", "POST", path, HANDSHAKE_CODES, query, headers, body, token=token)


TOKENS = st.one_of(
    guids.map(lambda g: "Validation: Testing client application reachability for subscription Request-Id: " + g),
    st.text(max_size=100),
    st.tuples(st.text(min_size=1, max_size=6), st.integers(300, 1100)).map(lambda t: (t[0] * 1100)[: t[1]]),
)
"""Graph's form, any text, and long ones around the 1 KiB the intake echoes at most."""
ENCODINGS = (lambda t: quote(t, safe=""), lambda t: quote(t, safe="/:@"), quote_plus)


@st.composite
def healthz_probe(draw: st.DrawFn) -> Probe:
    return Probe("healthz", "GET", "/healthz", frozenset({200}), _query_noise(draw), draw(_NOISE_HEADERS), must=200)


probes = st.one_of(webhook_probe(), webhook_probe(), webhook_probe(), webhook_probe(), webhook_probe(), healthz_probe())
"""Any request to the public endpoints (mostly to the webhooks)."""


# --- sending and checking -----------------------------------------------------------------------


def send(client: httpx.Client, base: str, probe: Probe) -> httpx.Response:
    url = base + probe.path + ("?" + probe.query if probe.query else "")
    content: Any = probe.body
    if probe.chunked:
        body = probe.body
        content = (body[i : i + 4096] for i in range(0, max(len(body), 1), 4096))
    request = client.build_request(probe.method, url, content=content if probe.body or probe.chunked else None,
                                 headers={k.encode(): v.encode() for k, v in probe.headers.items()})
    if "content-type" not in probe.headers:
        request.headers.pop("content-type", None)
    return client.send(request)


@dataclass
class Ledger:
    """What was sent and answered, the violations seen (the first :attr:`KEEP` in full, all counted by
    kind), and the journal entries owed."""

    KEEP = 50
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    owed: Counter[Effect] = field(default_factory=Counter)
    dropped: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    def merge(self, other: Ledger) -> None:
        self.sent += other.sent
        self.dropped += other.dropped
        self.statuses.update(other.statuses)
        self.labels.update(other.labels)
        self.owed.update(other.owed)
        self.problems.update(other.problems)
        self.violations.extend(other.violations[: max(0, self.KEEP - len(self.violations))])

    def check(self, probe: Probe, status: int | None, text: str = "", content_type: str = "") -> list[str]:
        """Record one answer (``None``: the connection closed without one); its violations."""
        self.sent += 1
        self.labels[probe.label] += 1
        problems: list[str] = []
        if status is None:
            self.dropped += 1
            if not probe.may_drop:
                problems.append("no answer (connection closed)")
        else:
            self.statuses[status] += 1
            if status not in probe.allowed:
                problems.append(f"status {status} not in {sorted(probe.allowed)}")
            elif probe.must is not None and status != probe.must:
                problems.append(f"status {status}, must be {probe.must}")
            if status == 202:
                self.owed.update(probe.effects)
            if probe.token is not None and status == 200:
                if text != probe.token:
                    problems.append("handshake echoed another token")
                if not content_type.startswith("text/plain"):
                    problems.append(f"handshake answered as {content_type!r}")
            if probe.label == "healthz" and status == 200 and text.replace(" ", "") != '{"status":"ok"}':
                problems.append("healthz answered something else than {\"status\": \"ok\"}")
        for problem in problems:
            self.problems[f"{probe.label.split(':')[0]}: {problem}"] += 1
        if problems and len(self.violations) < self.KEEP:
            self.violations.append(f"{describe(probe)}: {'; '.join(problems)}" + (f" (answer {text[:200]!r})" if text else ""))
        return problems


def describe(probe: Probe, limit: int = 1500) -> str:
    """The request, whole up to ``limit`` bytes of body (the middle of longer ones cut out)."""
    body = probe.body if len(probe.body) <= limit else probe.body[: limit - 200] + b"..." + probe.body[-200:]
    headers = {k: v if len(v) <= 80 else v[:40] + f"...({len(v)} chars)" for k, v in probe.headers.items()}
    query = probe.query if len(probe.query) <= 200 else probe.query[:100] + f"...({len(probe.query)} chars)"
    return (f"[{probe.label}] {probe.method} {probe.path}{'?' + query if query else ''} "
            f"headers={headers} chunked={probe.chunked} body({len(probe.body)} bytes)={body!r}")


def exchange(client: httpx.Client, base: str, probe: Probe, ledger: Ledger) -> list[str]:
    """Send one probe and check its answer; a dropped connection is retried as a fresh one by httpx."""
    try:
        r = send(client, base, probe)
    except httpx.TransportError:
        return ledger.check(probe, None)
    return ledger.check(probe, r.status_code, r.text, r.headers.get("content-type", ""))


class Recorder:
    """The service's handler: records every journal entry it is given as an :data:`Effect`."""

    def __init__(self) -> None:
        self.effects: list[Effect] = []

    async def __call__(self, unit: WorkUnit) -> None:
        self.effects.extend((e.kind, e.object_id, e.change_type) for e in unit.entries)


@dataclass
class Target:
    url: str
    service: Service
    recorder: Recorder
    db: Path

    def settled(self) -> bool:
        d = self.service.dispatcher
        return d.depth == 0 and d.running == 0


@contextlib.contextmanager
def fuzz_target(tmp: Path) -> Iterator[Target]:
    """``create_app(Service(...))`` under uvicorn on a free loopback port: the SQLite store in ``tmp``,
    our two subscriptions in it, a :class:`Recorder` as handler, the server's default limits."""
    db = tmp / "reactor.db"

    async def seed() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        for sub, state in SUBSCRIPTIONS.items():
            resource = "users" if sub == SUB_USERS else "groups"
            await store.save_subscription(SubscriptionRecord(
                sub, resource, "created,updated,deleted", "https://reactor.contoso.example/notifications",
                "https://reactor.contoso.example/lifecycle", state, time.time() + 3 * 86400, time.time(),
            ))
        await store.close()

    asyncio.run(seed())
    settings = with_overrides(
        Settings(), graph={"tenant_id": TENANT}, store={"url": f"sqlite:///{db}"}, server={"log_level": "error"}
    )
    recorder = Recorder()
    service = Service(settings, SQLiteStore(str(db)), recorder)
    with serve_in_thread(create_app(service)) as url:
        yield Target(url, service, recorder, db)


def fuzz(client: httpx.Client, url: str, ledger: Ledger, examples: int, seed: int | None = None) -> None:
    """Send ``examples`` generated probes one after the other on one keep-alive connection, checking
    each answer into ``ledger`` (nothing is shrunk: the ledger keeps every violating request whole)."""

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(probe=probes)
    def one(probe: Probe) -> None:
        exchange(client, url, probe, ledger)

    if seed is not None:
        one = hypothesis.seed(seed)(one)
    one()


def alive(client: httpx.Client, base: str) -> bool:
    try:
        r = client.get(base + "/healthz", timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def wait_settled(target: Target, ledger: Ledger, timeout: float = 30.0) -> None:
    """Wait until the handler has at least the entries owed and the dispatcher is idle."""
    owed = sum(ledger.owed.values())
    with contextlib.suppress(AssertionError):
        asyncio.run(eventually(lambda: len(target.recorder.effects) >= owed and target.settled(), "settled", timeout))


def effects(ledger: Ledger, recorder: Recorder) -> tuple[Counter[Effect], Counter[Effect]]:
    """``(missing, extra)``: valid items that never reached the handler, and entries that reached it
    without being owed (from invalid items). Both empty when all is well (after :func:`wait_settled`)."""
    got = Counter(recorder.effects)
    return ledger.owed - got, got - ledger.owed


def non_guid(effect: Effect) -> bool:
    """Whether the entry names its object by something else than a GUID (the id check is missing)."""
    return not _is_guid(effect[1]) or len(effect[1]) != 36


def effect_violations(ledger: Ledger, recorder: Recorder) -> list[str]:
    missing, extra = effects(ledger, recorder)
    problems = []
    if missing:
        problems.append(f"{sum(missing.values())} valid items never reached the handler, e.g. {list(missing)[:5]}")
    if extra:
        problems.append(f"{sum(extra.values())} journal entries from invalid items reached the handler, e.g. {list(extra)[:8]}")
    return problems


def leftover_journal(db: Path) -> list[Effect]:
    """The journal entries still pending in the store (after the server stopped)."""

    async def read() -> list[Effect]:
        store = SQLiteStore(str(db))
        await store.open()
        try:
            return [(e.kind, e.object_id, e.change_type) for e in await store.pending()]
        finally:
            await store.close()

    return asyncio.run(read())

