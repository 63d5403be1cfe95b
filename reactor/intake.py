"""The webhook intake: check, journal, answer. No Graph or SCIM call happens on this path.

``POST /notifications`` and ``POST /lifecycle`` share one code path:

1. ``?validationToken=…``: echo the URL-decoded token as ``text/plain`` (200); a token over 1 KiB or
   with control characters gets 400.
2. Read the body within ``server.max_body_bytes`` (413 on ``Content-Length`` or while streaming).
3. A JSON ``Content-Type`` (``application/json``, with or without parameters, or ``…+json``);
   415 otherwise.
4. Parse ``{"value": [...]}`` (400 otherwise); more than ``server.max_items_per_request`` items
   answer 413 (Graph sends far fewer per request). Each item is checked on its own: its
   ``clientState`` against the one stored for its ``subscriptionId`` (constant-time compare), its
   ``tenantId`` against ours, and its subscription and object ids must be GUIDs. Failing items are
   dropped and counted, never the whole batch; one ``notifications_rejected`` event per request
   sums them up by reason (with a few ids, truncated), however many there are.
5. Journal the accepted items durably, hand them to the dispatcher, answer 202. A failed journal
   write answers 503 so that Graph delivers again.

The work per request is bounded by the body and item limits, with no per-item logging, so that a
flood of junk cannot hold the event loop for long (a 1 MB body costs a few tens of milliseconds at
most; see ``tests/test_intake_limits.py``).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.types import Message, Receive, Scope, Send

from reactor import log
from reactor.client_states import ClientStates
from reactor.errors import StoreError
from reactor.metrics import (
    NOTIFICATIONS_ACCEPTED,
    NOTIFICATIONS_RECEIVED,
    NOTIFICATIONS_REJECTED,
    REQUESTS_REFUSED,
)
from reactor.store.base import Journal, JournalEntry, ObjectKind

MAX_TOKEN_BYTES = 1024
MAX_LOGGED_ID = 40
"""Ids from requests are logged at most this long (anything longer is cut and marked with "…")."""
VALUES_PER_ITEM = 64
"""A Graph notification item holds about 10 to 30 JSON values (commas); a body with more than
``max_items`` times this many commas cannot be a batch within the limit and is refused unparsed."""
SAMPLE_IDS = 3
"""How many rejected subscription ids the summary event of one request carries."""
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
"""Directory object and subscription ids: Graph's ids are GUIDs in the 8-4-4-4-12 form."""
class BodyTooLarge(Exception):
    pass


def _check_declared(content_length: bytes, limit: int) -> None:
    """Refuse a declared ``Content-Length`` over ``limit`` (one that is not a number is ignored)."""
    try:
        if int(content_length) > limit:
            raise BodyTooLarge
    except ValueError:
        pass


async def read_body(receive: Receive, limit: int, message: Message) -> bytes:
    """The request body from its first ``message`` (already received) on, refusing more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":
            raise BodyTooLarge if message["type"] != "http.disconnect" else ConnectionResetError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _valid_token(token: str) -> bool:
    if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        return False
    return not any(ord(ch) < 32 or ord(ch) == 127 for ch in token)


def is_guid(value: str) -> bool:
    """Whether ``value`` is a GUID in the 8-4-4-4-12 form (any case)."""
    return len(value) == 36 and GUID.fullmatch(value) is not None


def clip(value: object) -> str | None:
    """A value from a request, safe to log: a string cut to :data:`MAX_LOGGED_ID` characters."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_LOGGED_ID else text[:MAX_LOGGED_ID] + "…"


def is_json(content_type: bytes | None) -> bool:
    """Whether a ``Content-Type`` header names JSON (``application/json`` or ``…+json``, any parameters)."""
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _object_of(item: dict[str, Any]) -> tuple[ObjectKind, str] | None:
    """``("user" | "group", id)`` from a notification item, or None when it names neither.

    The kind comes from ``resourceData["@odata.type"]``, else from the head of ``resource``
    (``Users/<id>``); the id from ``resourceData.id``, else from ``resource``."""
    data = item.get("resourceData")
    kind: ObjectKind | None = None
    oid = ""
    if type(data) is dict:
        odata_type = data.get("@odata.type")
        odata_type = odata_type.lower() if type(odata_type) is str else ""
        if odata_type.endswith(".user"):
            kind = "user"
        elif odata_type.endswith(".group"):
            kind = "group"
        given = data.get("id")
        oid = given if type(given) is str else ""
    resource = item.get("resource")
    parts = resource.strip("/").split("/") if type(resource) is str else []
    if parts and len(parts) != 2:
        return None  # not Users/{id} or Groups/{id}: a sub-resource (Users/{id}/manager) or junk
    if kind is None or not oid:
        if not oid and len(parts) == 2:
            oid = parts[1]
        if kind is None:
            head = parts[0].lower() if parts else ""
            if head == "users":
                kind = "user"
            elif head == "groups":
                kind = "group"
            else:
                return None
    if not is_guid(oid):
        return None
    return kind, oid.lower()


_KEPT = frozenset(
    ("subscriptionId", "subscriptionExpirationDateTime", "changeType", "resource", "tenantId", "lifecycleEvent")
)
_KEPT_DATA = frozenset(("id", "@odata.type", "@odata.id", "@odata.etag"))
_SCALARS = frozenset((str, int, float, bool))


def _journaled(item: dict[str, Any]) -> dict[str, Any]:
    """What the journal keeps of an accepted item: the notification fields the reactor reads, with
    scalar values only. Never the clientState (the journal holds no copy of the secret), and nothing
    else a sender added (it cannot bloat the journal or nest deeper than a store can write)."""
    kept = {k: v for k, v in item.items() if k in _KEPT and type(v) in _SCALARS}
    data = item.get("resourceData")
    if type(data) is dict:
        kept["resourceData"] = {k: v for k, v in data.items() if k in _KEPT_DATA and type(v) in _SCALARS}
    return kept


_ROUTES = ("notifications", "lifecycle")


class Intake:
    """The two webhook routes. ``on_journaled`` gets the entries once they are durable."""

    def __init__(
        self,
        store: Journal,
        client_states: ClientStates,
        tenant_id: str,
        max_body_bytes: int,
        on_journaled: Callable[[Sequence[JournalEntry]], None],
        max_items: int = 1000,
    ) -> None:
        self.store = store
        self.client_states = client_states
        self.tenant_id = tenant_id.lower()
        self.max_body_bytes = max_body_bytes
        self.max_items = max_items
        self.on_journaled = on_journaled
        # Items received and accepted per route, counted in plain integers on the hot path and added
        # to the Prometheus counters by publish() (at every scrape): a labelled counter's lock costs
        # more than the rest of the bookkeeping of a request.
        self._counts = {r: [0, 0] for r in _ROUTES}
        self._published = {r: [0, 0] for r in _ROUTES}

    def publish(self) -> None:
        """Add what was counted since the last call to the Prometheus counters."""
        for route in _ROUTES:
            counts, published = self._counts[route], self._published[route]
            received, accepted = counts[0] - published[0], counts[1] - published[1]
            if received:
                NOTIFICATIONS_RECEIVED.labels(route).inc(received)
            if accepted:
                NOTIFICATIONS_ACCEPTED.labels(route).inc(accepted)
            published[0] += received
            published[1] += accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The raw ASGI handler of ``POST /notifications`` and ``POST /lifecycle``.

        This is the hot path, written flat on purpose: no framework objects and as few coroutine
        frames as possible between the socket and the journal."""
        route = "lifecycle" if scope["path"].rstrip("/").endswith("/lifecycle") else "notifications"
        if scope.get("query_string"):
            answer = self._handshake(scope, route)
            if answer is not None:
                await _respond(send, *answer)
                return
        content_type = None
        declared = None
        for name, value in scope["headers"]:  # one pass for both headers
            if name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"content-length" and declared is None:
                declared = value
        try:
            # Read (within the limit) even a body we refuse for its type: answering while the client
            # still sends makes the connection reset under it, and it sees no answer at all.
            # The usual request has its body in one message: taken here, without a coroutine of its own.
            limit = self.max_body_bytes
            if declared is not None:
                _check_declared(declared, limit)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body = message.get("body", b"")
                if len(body) > limit:
                    raise BodyTooLarge
            else:
                body = await read_body(receive, limit, message)
        except BodyTooLarge:
            REQUESTS_REFUSED.labels("413").inc()
            log.event("body_too_large", level="warning", route=route, limit=self.max_body_bytes)
            await _respond(send, 413, b"request body too large")
            return
        except ConnectionResetError:
            return
        if not is_json(content_type):
            REQUESTS_REFUSED.labels("415").inc()
            await _respond(send, 415, b"Content-Type must be application/json")
            return
        if body.count(b",") > self.max_items * VALUES_PER_ITEM:
            # Far more JSON values than max_items notifications can hold: refused before parsing,
            # which is what a flood of tiny items costs (a megabyte of "{}," takes ~25 ms to parse).
            await self._too_many(send, route, None)
            return
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            REQUESTS_REFUSED.labels("400").inc()
            await _respond(send, 400, b"body is not JSON")
            return
        items = doc.get("value") if type(doc) is dict else None
        if type(items) is not list:
            REQUESTS_REFUSED.labels("400").inc()
            await _respond(send, 400, b'body must be a JSON object with a "value" array')
            return
        counts = self._counts[route]
        counts[0] += len(items)
        if len(items) > self.max_items:
            await self._too_many(send, route, len(items))
            return
        now = time.time()
        accepted, unknown = self._sort(items, route, now, record=False)
        if unknown is not None:
            # A subscription we do not know (yet): reload the clientStates once for this batch
            # (rate-limited by ClientStates), then look again.
            await self.client_states.get(unknown)
        if unknown is not None or len(accepted) != len(items):
            accepted, _ = self._sort(items, route, now, record=True)
        if accepted:
            try:
                seqs = await self.store.append(accepted)
            except StoreError as exc:
                REQUESTS_REFUSED.labels("503").inc()
                log.event("journal_write_failed", level="error", route=route, error=str(exc), items=len(accepted))
                await _respond(send, 503, b"journal unavailable, retry later")
                return
            counts[1] += len(accepted)
            for entry, seq in zip(accepted, seqs, strict=True):
                entry.seq = seq
            self.on_journaled(accepted)
            if log.enabled("debug"):
                log.event(
                    "notifications_journaled",
                    level="debug",
                    route=route,
                    items=[{"seq": e.seq, "kind": e.kind, "object_id": e.object_id, "change": e.change_type} for e in accepted],
                )
        await send(_ACCEPTED_START)
        await send(_EMPTY_BODY)

    async def _too_many(self, send: Send, route: str, items: int | None) -> None:
        REQUESTS_REFUSED.labels("413").inc()
        # Unparsed, the count is unknown: at least max_items + 1.
        NOTIFICATIONS_REJECTED.labels(route, "too_many_items").inc(items if items is not None else self.max_items + 1)
        log.event("too_many_items", level="warning", route=route, items=items, limit=self.max_items)
        await _respond(send, 413, f"more than {self.max_items} items in one request".encode())

    def _handshake(self, scope: Scope, route: str) -> tuple[int, bytes] | None:
        """The answer to ``?validationToken=…``, or None when the query string has none."""
        params = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if "validationToken" not in params:
            return None
        token = params["validationToken"][0]
        if not _valid_token(token):
            REQUESTS_REFUSED.labels("400").inc()
            return 400, b"invalid validationToken"
        log.event("validation_handshake", route=route)
        return 200, token.encode("utf-8", "surrogateescape")

    def _sort(self, items: list[Any], route: str, now: float, *, record: bool) -> tuple[list[JournalEntry], str | None]:
        """The items we accept, and the first subscription id we do not know (if any). With ``record``,
        every rejected item is counted and logged."""
        accepted: list[JournalEntry] = []
        unknown: str | None = None
        rejected: dict[str, int] = {}
        samples: list[str | None] = []
        for item in items:
            reason, entry = self._check(item, route, now)
            if entry is not None:
                accepted.append(entry)
                continue
            if reason == "unknown_subscription" and unknown is None:
                unknown = item["subscriptionId"]
            if record:
                rejected[reason] = rejected.get(reason, 0) + 1
                if len(samples) < SAMPLE_IDS:
                    samples.append(clip(item.get("subscriptionId")) if type(item) is dict else None)
        if rejected:
            for reason, n in rejected.items():
                NOTIFICATIONS_REJECTED.labels(route, reason).inc(n)
            log.event(
                "notifications_rejected", level="warning", route=route,
                # "reason=count ..." as one string: a dict key such as client_state would be redacted.
                rejected=" ".join(f"{reason}={n}" for reason, n in sorted(rejected.items())),
                accepted=len(accepted), subscription_ids=samples,
            )
        return accepted, unknown

    def _check(self, item: Any, route: str, now: float) -> tuple[str, JournalEntry | None]:
        """``("", entry)`` for an item we accept (its ``seq`` still 0), else ``(reason, None)``."""
        if type(item) is not dict:
            return "malformed", None
        sub_id = item.get("subscriptionId")
        if type(sub_id) is not str or not is_guid(sub_id):
            return "malformed", None
        sub_id = sub_id.lower()
        expected = self.client_states.cached(sub_id)
        given = item.get("clientState")
        if expected is None:
            # A subscription being created (its clientState stored as pending before the POST)?
            if type(given) is not str or not self.client_states.pending_matches(given.encode("utf-8", "replace")):
                return "unknown_subscription", None
        elif type(given) is not str or not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
            return "client_state", None
        tenant = item.get("tenantId")
        if type(tenant) is not str or tenant.lower() != self.tenant_id:
            return "tenant", None
        if route == "lifecycle":
            event_name = item.get("lifecycleEvent")
            if type(event_name) is not str or not event_name:
                return "malformed", None
            return "", JournalEntry("lifecycle", sub_id, now, _journaled(item), sub_id, event_name)
        obj = _object_of(item)
        if obj is None:
            return "malformed", None
        change_type = item.get("changeType")
        return "", JournalEntry(obj[0], obj[1], now, _journaled(item), sub_id, change_type if type(change_type) is str else "")


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_TEXT_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_TEXT_HEADERS = (
    # The handshake echoes text chosen by the caller: never let a browser sniff it into HTML, frame
    # it or run anything from it.
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
_ACCEPTED_START = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
