"""Many SCIM writes in one request: ``POST /Bulk`` (RFC 7644 §3.7), when AskCody offers it.

:class:`BulkSender` sits under :class:`~reactor.scim.client.AskCodyClient`'s writes (POST, PUT, PATCH,
DELETE) when AskCody's ServiceProviderConfig says ``bulk.supported`` (and ``askcody.bulk`` is on).
Each write waits in a queue; a sender takes one token of the shared rate limit per HTTP request, then
everything that waits (at most ``maxOperations`` operations and ``maxPayloadSize`` bytes) goes out
together. A write alone is sent as the plain request it is, so a lone change costs no extra latency;
writes pile up, and share a request, exactly when the rate limit (or AskCody's latency) holds them
back: the units of a bulk sync then cost a fraction of a request each.

Each caller gets its own operation's outcome, mapped by the client's one status rule: a 409 on a
create is that caller's :class:`~reactor.errors.ConflictError`, a 429 inside the bulk is its
:class:`~reactor.errors.ThrottledError`, and so on, so the callers' retries and dead letters work as
for single requests. A write sent with ``If-Match`` carries it as its operation's ``version``, and
a 412 in its result is that caller's, as a plain request's would be; the ``version`` of a result is
in its caller's answer (``meta.version``). When the bulk request itself fails transiently (5xx, 429,
timeout, a lost answer: some of its operations may have been applied), every caller gets that error
and runs again through its retry policy: creates then meet a 409 and adopt, member adds and attribute
replaces are idempotent, deletes meet a 404 (gone). When AskCody refuses the bulk request as a whole
(another 4xx, 501), bulk is switched off for the client's lifetime and the operations are sent one by one.

The operations of one user never share a bulk request: the dispatcher runs a user once at a time and
its unit waits for each write before the next, so per-object order holds.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from reactor import log
from reactor.errors import PermanentError, TransientError
from reactor.metrics import SCIM_BULK_OPERATIONS

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods a bulk request can carry (RFC 7644 §3.7: no GET)."""
ENVELOPE_BYTES = 200
"""Room kept for the request's own JSON around the operations when counting ``maxPayloadSize``."""
IN_FLIGHT = 8
"""Bulk (or lone) write requests in flight at once."""

Transmit = Callable[[str, str, Any, str | None], Awaitable[Any]]
"""Send one request (method, path, body, ``If-Match`` or None) without taking a rate-limit token; its
JSON, or the mapped error."""
Classify = Callable[[str, int, bytes], Exception | None]
"""The client's status rule: (where, status, error body) → the error, None for a 2xx."""


@dataclass(frozen=True)
class BulkLimits:
    """What AskCody's ServiceProviderConfig allows in one bulk request."""

    max_operations: int
    max_payload_size: int


def limits_of(config: Any) -> BulkLimits | None:
    """The bulk limits a ServiceProviderConfig advertises, or None when bulk is not supported (or
    allows fewer than two operations, or no payload at all: nothing to gain)."""
    bulk = config.get("bulk") if isinstance(config, dict) else None
    if not isinstance(bulk, dict) or bulk.get("supported") not in (True, "true", "True"):
        return None
    try:
        operations = int(bulk.get("maxOperations") or 0)
        payload = int(bulk.get("maxPayloadSize") or 0)
    except (TypeError, ValueError):
        return None
    if operations < 2 or payload <= ENVELOPE_BYTES:
        return None
    return BulkLimits(operations, payload)


@dataclass
class _Write:
    method: str
    path: str
    body: Any
    size: int
    future: asyncio.Future[Any]
    version: str | None = None
    """Sent as ``If-Match`` (in a bulk request: the operation's ``version``)."""

    def operation(self, bulk_id: str) -> dict[str, Any]:
        op: dict[str, Any] = {"method": self.method, "path": self.path, "bulkId": bulk_id}
        if self.version is not None:
            op["version"] = self.version
        if self.body is not None:
            op["data"] = self.body
        return op


class BulkSender:
    """Gathers concurrent writes into ``POST /Bulk`` requests (see the module's text).

    :param transmit: sends one request without taking a token (the client's transport).
    :param acquire: takes one token of the shared rate limit.
    :param classify: the client's status → error rule.
    :param limits: what AskCody allows in one bulk request.
    """

    def __init__(
        self, transmit: Transmit, acquire: Callable[[], Awaitable[Any]], classify: Classify, limits: BulkLimits,
        *, in_flight: int = IN_FLIGHT,
    ) -> None:
        self.transmit = transmit
        self.acquire = acquire
        self.classify = classify
        self.limits = limits
        self.enabled = True
        """False once AskCody refused a bulk request as a whole: plain requests from then on."""
        self._queue: deque[_Write] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(in_flight)
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, method: str, path: str, body: Any, version: str | None = None) -> Any:
        """Send one write, alone or in a bulk request with others waiting; its JSON answer (for a
        create: the resource, or what was sent with the ``id`` of the ``location`` AskCody answered;
        with the result's ``version`` as ``meta.version``). ``version``: sent as ``If-Match``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        size = len(orjson.dumps(body)) + len(path) + 64 if body is not None else len(path) + 64
        if version is not None:
            size += len(version) + 16
        self._queue.append(_Write(method, path, body, size, future, version))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._run(), name="reactor-scim-bulk")
        return await future

    async def aclose(self) -> None:
        """Cancel what is being sent (its callers get a TransientError) and wait for it."""
        tasks = [t for t in (self._sender, *self._sending) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for write in self._queue:
            if not write.future.done():
                write.future.set_exception(TransientError("the SCIM client was closed"))
        self._queue.clear()

    async def _run(self) -> None:
        try:
            while self._queue:
                await self._slots.acquire()
                try:
                    await self.acquire()  # one token a request: what waits meanwhile goes along
                    taken = self._take()
                except BaseException:
                    self._slots.release()
                    raise
                if not taken:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._send(taken), name="reactor-scim-bulk-request")
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        except BaseException:
            for write in self._queue:
                if not write.future.done():
                    write.future.set_exception(TransientError("stopped before the write was sent"))
            self._queue.clear()
            raise

    def _take(self) -> list[_Write]:
        taken: list[_Write] = []
        size = ENVELOPE_BYTES
        limit = self.limits.max_operations if self.enabled else 1
        while self._queue and len(taken) < limit:
            write = self._queue[0]
            if write.future.done():  # its caller was cancelled
                self._queue.popleft()
                continue
            if taken and size + write.size > self.limits.max_payload_size:
                break
            taken.append(self._queue.popleft())
            size += write.size
        return taken

    async def _send(self, taken: list[_Write]) -> None:
        try:
            if len(taken) == 1:
                await self._one(taken[0])
            else:
                await self._bulk(taken)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else TransientError("stopped while the write was sent")
            for write in taken:
                if not write.future.done():
                    write.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._slots.release()

    async def _one(self, write: _Write) -> None:
        try:
            answer = await self.transmit(write.method, write.path, write.body, write.version)
        except Exception as exc:
            _settle(write, error=exc)
        else:
            _settle(write, answer)

    async def _bulk(self, taken: list[_Write]) -> None:
        body = {"schemas": [BULK_REQUEST], "Operations": [w.operation(str(i)) for i, w in enumerate(taken)]}
        try:
            answer = await self.transmit("POST", "/Bulk", body, None)
        except PermanentError as exc:
            if exc.status in (None, 401, 403):
                raise  # the token or the endpoint: every caller's own error, not bulk's
            self.enabled = False
            log.event("scim_bulk_refused", level="warning", status=exc.status, error=str(exc), now="one request a write")
            await asyncio.gather(*(self._plain(w) for w in taken))
            return
        results = _by_bulk_id(answer)
        if results is None:
            unanswered = TransientError(f"POST /Bulk: the answer carries no Operations ({len(taken)} writes)")
            for write in taken:
                _settle(write, error=unanswered)
            return
        for i, write in enumerate(taken):
            where = f"{write.method} {write.path} (in a bulk request)"
            result = results.get(str(i))
            if result is None:
                SCIM_BULK_OPERATIONS.labels(write.method, "unanswered").inc()
                _settle(write, error=TransientError(f"{where}: not answered"))
                continue
            status = _status(result.get("status"))
            response = result.get("response")
            raw = orjson.dumps(response) if response is not None else b""
            error: Exception | None = self.classify(where, status, raw) if status else TransientError(f"{where}: no status")
            SCIM_BULK_OPERATIONS.labels(write.method, "ok" if error is None else str(status or "none")).inc()
            if error is not None:
                _settle(write, error=error)
            else:
                _settle(write, _answer_of(write, result))

    async def _plain(self, write: _Write) -> None:
        await self.acquire()
        await self._one(write)


def _settle(write: _Write, answer: Any = None, *, error: Exception | None = None) -> None:
    if write.future.done():
        return
    if error is not None:
        write.future.set_exception(error)
    else:
        write.future.set_result(answer)


def _by_bulk_id(answer: Any) -> dict[str, dict[str, Any]] | None:
    operations = answer.get("Operations") if isinstance(answer, dict) else None
    if not isinstance(operations, list):
        return None
    return {str(op.get("bulkId")): op for op in operations if isinstance(op, dict) and op.get("bulkId") is not None}


def _status(value: Any) -> int:
    """An operation's status: ``"201"`` (RFC 7644), ``201``, or ``{"code": 201}`` (early drafts)."""
    if isinstance(value, dict):
        value = value.get("code")
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def _answer_of(write: _Write, result: dict[str, Any]) -> Any:
    """What the plain request would have answered, as far as the bulk response tells: the resource
    when AskCody sent it, else for a create what was sent with the id its ``location`` names; the
    result's ``version`` as ``meta.version`` (as the ``ETag`` of a plain answer)."""
    response = result.get("response")
    version = result.get("version") if isinstance(result.get("version"), str) and result.get("version") else None
    if isinstance(response, dict) and "id" in response:
        return with_version(response, version)
    location = result.get("location")
    if write.method == "POST" and isinstance(location, str) and location.rstrip("/"):
        scim_id = urllib.parse.unquote(urllib.parse.urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
        if scim_id:
            meta = {"location": location} | ({"version": version} if version else {})
            return {**(write.body or {}), "id": scim_id, "meta": meta}
    return with_version(response if isinstance(response, dict) else None, version)


def with_version(answer: Any, version: str | None) -> Any:
    """``answer`` with ``meta.version`` = ``version`` when it carries none (an empty answer: just
    that), so that callers read a write's new version from its answer, however it came."""
    if version is None:
        return answer
    if answer is None:
        return {"meta": {"version": version}}
    if not isinstance(answer, dict):
        return answer
    found = answer.get("meta")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    if meta.get("version"):
        return answer
    return {**answer, "meta": {**meta, "version": version}}
