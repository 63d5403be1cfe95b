"""The webhook intake: check, journal, answer. No Graph or SCIM call happens on this path.

``POST /notifications`` and ``POST /lifecycle`` share one code path:

1. ``?validationToken=…``: echo the URL-decoded token as ``text/plain`` (200); a token over 1 KiB or
   with control characters gets 400.
2. Read the body within ``server.max_body_bytes`` (413 on ``Content-Length`` or while streaming).
3. Parse ``{"value": [...]}`` (400 otherwise). Each item is checked on its own: its ``clientState``
   against the one stored for its ``subscriptionId`` (constant-time compare) and its ``tenantId``
   against ours. Failing items are dropped and counted, never the whole batch.
4. Journal the accepted items durably, hand them to the dispatcher, answer 202. A failed journal
   write answers 503 so that Graph delivers again.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.types import Receive, Scope, Send

from reactor import log
from reactor.errors import StoreError
from reactor.metrics import (
    NOTIFICATIONS_ACCEPTED,
    NOTIFICATIONS_RECEIVED,
    NOTIFICATIONS_REJECTED,
    REQUESTS_REFUSED,
)
from reactor.store.base import JournalEntry, JournalItem, ObjectKind, Store

MAX_TOKEN_BYTES = 1024
_REFRESH_INTERVAL = 0.05


class ClientStates:
    """The clientState of each of our subscriptions, cached from the store.

    An unknown subscription id triggers a reload from the store (at most one every 50 ms), so that a
    subscription just created by the manager or by another process (``reactor subscriptions ensure``)
    is recognised at once, while a flood of forged ids costs at most 20 small reads a second.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._states: dict[str, bytes] = {}
        self._loaded_at = float("-inf")

    async def refresh(self) -> None:
        records = await self.store.subscriptions()
        self._states = {r.id.lower(): r.client_state.encode() for r in records}
        self._loaded_at = self.clock()

    def set(self, subscription_id: str, client_state: str) -> None:
        self._states[subscription_id.lower()] = client_state.encode()

    def forget(self, subscription_id: str) -> None:
        self._states.pop(subscription_id.lower(), None)

    def cached(self, subscription_id: str) -> bytes | None:
        """The clientState if it is in the cache (no store access)."""
        return self._states.get(subscription_id.lower())

    async def get(self, subscription_id: str) -> bytes | None:
        key = subscription_id.lower()
        state = self._states.get(key)
        if state is None and self.clock() - self._loaded_at >= _REFRESH_INTERVAL:
            try:
                await self.refresh()
            except StoreError:
                return None
            state = self._states.get(key)
        return state


class BodyTooLarge(Exception):
    pass


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (declared or streamed)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BodyTooLarge if message["type"] != "http.disconnect" else ConnectionResetError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _valid_token(token: str) -> bool:
    if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        return False
    return not any(ord(ch) < 32 or ord(ch) == 127 for ch in token)


def _object_of(item: dict[str, Any]) -> tuple[ObjectKind, str] | None:
    """``("user" | "group", id)`` from a notification item, or None when it names neither."""
    data = item.get("resourceData")
    odata_type = ""
    oid = ""
    if isinstance(data, dict):
        odata_type = str(data.get("@odata.type", "")).lower()
        oid = str(data.get("id", "") or "")
    resource = item.get("resource")
    parts = resource.strip("/").split("/") if isinstance(resource, str) else []
    if not oid and len(parts) >= 2:
        oid = parts[1]
    head = parts[0].lower() if parts else ""
    if odata_type.endswith(".user") or head == "users":
        kind: ObjectKind = "user"
    elif odata_type.endswith(".group") or head == "groups":
        kind = "group"
    else:
        return None
    if not oid or len(oid) > 64:
        return None
    return kind, oid.lower()


class Intake:
    """The two webhook routes. ``on_journaled`` gets the entries once they are durable."""

    def __init__(
        self,
        store: Store,
        client_states: ClientStates,
        tenant_id: str,
        max_body_bytes: int,
        on_journaled: Callable[[Sequence[JournalEntry]], None],
    ) -> None:
        self.store = store
        self.client_states = client_states
        self.tenant_id = tenant_id.lower()
        self.max_body_bytes = max_body_bytes
        self.on_journaled = on_journaled
        self._received = {r: NOTIFICATIONS_RECEIVED.labels(r) for r in ("notifications", "lifecycle")}
        self._accepted = {r: NOTIFICATIONS_ACCEPTED.labels(r) for r in ("notifications", "lifecycle")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The raw ASGI handler of ``POST /notifications`` and ``POST /lifecycle`` (the hot path:
        no framework objects between the socket and the journal)."""
        route = "lifecycle" if scope["path"].rstrip("/").endswith("/lifecycle") else "notifications"
        try:
            status, body = await self._handle(scope, receive, route)
        except ConnectionResetError:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, route: str) -> tuple[int, bytes]:
        query = scope.get("query_string", b"")
        if query:
            params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
            if "validationToken" in params:
                token = params["validationToken"][0]
                if not _valid_token(token):
                    REQUESTS_REFUSED.labels("400").inc()
                    return 400, b"invalid validationToken"
                log.event("validation_handshake", route=route)
                return 200, token.encode("utf-8", "surrogateescape")
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge:
            REQUESTS_REFUSED.labels("413").inc()
            log.event("body_too_large", level="warning", route=route, limit=self.max_body_bytes)
            return 413, b"request body too large"
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            REQUESTS_REFUSED.labels("400").inc()
            return 400, b"body is not JSON"
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
            REQUESTS_REFUSED.labels("400").inc()
            return 400, b'body must be a JSON object with a "value" array'
        now = time.time()
        accepted: list[JournalItem] = []
        items = doc["value"]
        self._received[route].inc(len(items))
        await self._learn_subscriptions(items)
        for item in items:
            reason, journal_item = self._check(item, route, now)
            if journal_item is None:
                NOTIFICATIONS_REJECTED.labels(route, reason).inc()
                log.event(
                    "notification_rejected",
                    level="warning",
                    route=route,
                    reason=reason,
                    subscription_id=item.get("subscriptionId") if isinstance(item, dict) else None,
                )
                continue
            accepted.append(journal_item)
        if accepted:
            try:
                seqs = await self.store.append(accepted)
            except StoreError as exc:
                REQUESTS_REFUSED.labels("503").inc()
                log.event("journal_write_failed", level="error", route=route, error=str(exc), items=len(accepted))
                return 503, b"journal unavailable, retry later"
            self._accepted[route].inc(len(accepted))
            entries = [
                JournalEntry(
                    seq=s, kind=i.kind, object_id=i.object_id, received_at=i.received_at, payload=i.payload,
                    subscription_id=i.subscription_id, change_type=i.change_type,
                )
                for s, i in zip(seqs, accepted, strict=True)
            ]
            self.on_journaled(entries)
            if log.enabled("debug"):
                log.event(
                    "notifications_journaled",
                    level="debug",
                    route=route,
                    items=[{"seq": e.seq, "kind": e.kind, "object_id": e.object_id, "change": e.change_type} for e in entries],
                )
        return 202, b""

    async def _learn_subscriptions(self, items: list[Any]) -> None:
        """Reload the clientStates once when a batch names a subscription we do not know (yet)."""
        for item in items:
            if isinstance(item, dict):
                sub_id = item.get("subscriptionId")
                if isinstance(sub_id, str) and 0 < len(sub_id) <= 64 and self.client_states.cached(sub_id) is None:
                    await self.client_states.get(sub_id)
                    return

    def _check(self, item: Any, route: str, now: float) -> tuple[str, JournalItem | None]:
        if not isinstance(item, dict):
            return "malformed", None
        sub_id = item.get("subscriptionId")
        given = item.get("clientState")
        tenant = item.get("tenantId")
        if not isinstance(sub_id, str) or not sub_id or len(sub_id) > 64:
            return "malformed", None
        expected = self.client_states.cached(sub_id)
        if expected is None:
            return "unknown_subscription", None
        if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
            return "client_state", None
        if not isinstance(tenant, str) or tenant.lower() != self.tenant_id:
            return "tenant", None
        change_type = item.get("changeType") if isinstance(item.get("changeType"), str) else ""
        if route == "lifecycle":
            event_name = item.get("lifecycleEvent")
            if not isinstance(event_name, str) or not event_name:
                return "malformed", None
            return "", JournalItem(
                kind="lifecycle", object_id=sub_id.lower(), received_at=now, payload=item,
                subscription_id=sub_id.lower(), change_type=event_name,
            )
        obj = _object_of(item)
        if obj is None:
            return "malformed", None
        kind, oid = obj
        return "", JournalItem(
            kind=kind, object_id=oid, received_at=now, payload=item, subscription_id=sub_id.lower(),
            change_type=str(change_type),
        )
