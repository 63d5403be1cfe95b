"""Raw-JSON access to Microsoft Graph over one aiohttp session.

Every request goes through :meth:`GraphClient._send`: one ``aiohttp`` request (HTTP/1.1, keep-alive,
30 s in all and 10 s to connect, redirects never followed: Graph's API does not redirect, and a
redirect to another host must not carry the token), its body read as bytes and parsed with orjson.
Each request carries ``Accept: application/json``, ``Content-Type: application/json`` with a body,
a ``client-request-id`` (a fresh uuid4, which Graph echoes and Microsoft support asks for) and a
``User-Agent`` naming the reactor and its version. The bearer token comes from
:class:`reactor.graph.auth.BearerToken` (a static token, or an azure-identity credential's, cached
until 5 minutes before it expires), only for URLs on ``graph.base_url``'s origin.

The transport used to be msgraph-sdk's request adapter (kiota's 9 middleware handlers over httpx
with HTTP/2); it cost 1.2 ms of CPU per ``POST /$batch`` of 20 reads against 0.2-0.3 ms here, on an
event loop shared with the webhook intake. The SDK's models were never used (they cost about 5 ms a
user), nor its retries: retries follow the project's one policy, :mod:`reactor.retry` (target
``graph``): reads (GET) and idempotent writes (PATCH, DELETE) are retried, POSTs only when the caller
says so (a retried ``POST /subscriptions`` can duplicate a subscription). A ``Retry-After`` holds
back every request of the client, not just the one retried: Graph throttles the application, so the
other workers wait too (at most the retry horizon; not in ``retry.TESTING``).

Every request takes a token from a :class:`~reactor.ratelimit.TokenBucket` of
``graph.max_requests_per_second`` first, a ``$batch`` one per request it carries (Graph throttles
each of them, in resource units: ``concepts/throttling-limits.md``); the bucket holds one second of
them (at least a full ``$batch``), so that the rate holds over any window: at most ``rate * (T + 1)``
requests in ``T`` seconds. It held 10 s of them, which let 500 reads go in the first second after a
quiet spell at the default rate, and a flood's units run at three times the rate after each pause
(bench/README.md). Without it, a flood of notifications for a few hundred users had the workers
read Graph 600 times a second (more than Graph allows an application in a tenant of that size, 500
units a second) and the reads' CPU took half the webhook intake's throughput (bench/README.md).

Every failure is mapped into :mod:`reactor.errors` by :func:`map_graph_error`, which applies
:func:`reactor.errors.error_for_status` (the same rules as the SCIM client's), except:

    410, or a sync-state code
    on a ``/delta`` URL            DeltaTokenExpired
    timeouts, connection errors    TransientError
    authentication refused         PermanentError (status 401), the credential's message
    the error text                 status, Graph error code and message; never a token
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
import yarl
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError

from reactor import __version__
from reactor import retry as retry_mod
from reactor.config import GraphSettings
from reactor.errors import (
    ConflictError,
    DeltaTokenExpired,
    NotFoundError,
    PermanentError,
    ReactorError,
    ThrottledError,
    TransientError,
    error_for_status,
)
from reactor.graph.auth import BearerToken
from reactor.graph.batch import MAX_REQUESTS as MAX_BATCH
from reactor.metrics import GRAPH_BUDGET_WAIT, GRAPH_CALLS
from reactor.ratelimit import TokenBucket
from reactor.retry import DEFAULT_POLICY, RetryPolicy, parse_retry_after
from reactor.retry import call as call_with_retry

T = TypeVar("T")

BUCKET_SECONDS = 1.0
"""How many seconds of ``graph.max_requests_per_second`` may go at once (at least :data:`MAX_BATCH`
requests: a full ``$batch`` takes one token per request it carries)."""
DELTA_EXPIRED_MARKERS = ("syncstate", "resync", "deltatoken", "tokenexpired")
TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0)
USER_AGENT = f"askcody-entra-reactor/{__version__}"
JSON = "application/json"


def _graph_error(body: bytes) -> tuple[str, str]:
    """The ``code`` and ``message`` of a Graph error body ``{"error": {"code", "message"}}``; empty when absent."""
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return "", ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else ""), (message if isinstance(message, str) else "")


def map_graph_error(
    status: int, body: bytes, *, method: str, url: str, retry_after: str | None = None, now: float | None = None
) -> ReactorError:
    """The reactor's exception for a Graph answer that is not a success.

    ``status`` and the raw ``body`` of the answer (a Graph error body gives the code and message of
    the error's text), the request's ``method`` and ``url`` (only its path goes into the text), the
    answer's ``Retry-After`` header (seconds or an HTTP date, read against ``now`` in epoch seconds).
    A ``/delta`` URL answered 410, or with a sync-state error code, is :class:`DeltaTokenExpired`;
    anything else follows :func:`reactor.errors.error_for_status`.
    """
    code, message = _graph_error(body)
    path = urlsplit(url).path
    text = f"Graph {method} {path}: {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    is_delta = path.rstrip("/").endswith("/delta")
    if is_delta and (status == 410 or any(m in code.lower() for m in DELTA_EXPIRED_MARKERS)):
        return DeltaTokenExpired(text)
    return error_for_status(status, text, retry_after=parse_retry_after(retry_after, now=now))


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ThrottledError):
        return "throttled"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, NotFoundError):
        return "not_found"
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, DeltaTokenExpired):
        return "delta_expired"
    return "permanent"


def _cost(url: str, body: Mapping[str, Any] | None) -> int:
    """The tokens a request takes: one, or one per request a ``$batch`` carries."""
    if body is not None and url.endswith("/$batch"):
        requests = body.get("requests")
        if isinstance(requests, list) and requests:
            return min(len(requests), MAX_BATCH)
    return 1


def _yarl(url: str) -> yarl.URL:
    """``url`` as sent: verbatim when it is already encoded (ours are, and so are Graph's links)."""
    return yarl.URL(url, encoded=url.isascii() and " " not in url)


class GraphClient:
    """Async Graph access returning parsed JSON; see the module docstring for transport, retries and errors.

    ``retry`` is the policy of retried calls (``reactor.retry.testing()`` removes its sleeps in tests);
    ``clock`` (epoch seconds) turns a ``Retry-After`` date into seconds and is what tokens' expiry is
    compared with; ``credential`` replaces the one :func:`reactor.graph.auth.build_credential` would
    build; ``session`` is an aiohttp session to send through (left open; the client's timeouts,
    headers and no-redirect rule apply per request); ``bucket`` the token bucket every request takes
    from (default: ``max_requests_per_second`` of ``settings``, holding :data:`BUCKET_SECONDS` of it).
    By default the client opens its own session on first use, in the running event loop, and
    :meth:`aclose` closes it. The client closes only what it created.
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy = DEFAULT_POLICY,
        session: aiohttp.ClientSession | None = None,
        credential: AsyncTokenCredential | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        rate = settings.max_requests_per_second
        self.bucket = bucket if bucket is not None else TokenBucket(rate, max(rate * BUCKET_SECONDS, float(MAX_BATCH)))
        self.base_url = settings.base_url.rstrip("/")
        self.retry = retry
        self._clock = clock
        self._paused_until = 0.0
        self._token = BearerToken(settings, credential, clock=clock)  # checks base_url: https, or http on loopback
        self._session = session
        self._own_session = session is None

    def url(self, url_or_path: str, params: Mapping[str, str] | None = None) -> str:
        """An absolute URL: ``url_or_path`` on our Graph origin (an absolute URL must be on it), plus ``params``."""
        if url_or_path.startswith(("http://", "https://")):
            if not self._token.allowed(url_or_path):
                raise PermanentError(
                    f"refusing a Graph URL outside {urlsplit(self.base_url).netloc}: {urlsplit(url_or_path).netloc}")
            url = url_or_path
        else:
            url = f"{self.base_url}/{url_or_path.lstrip('/')}"
        if params:
            sep = "&" if "?" in url else "?"
            url += sep + urlencode(dict(params), quote_via=quote, safe="$,'()")
        return url

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cookies: Graph's API sets none worth keeping, and nothing should ride along unasked.
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar())
            self._own_session = True
        return self._session

    async def _send(self, method: str, url: str, operation: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        paused = self._paused_until - time.monotonic()
        if paused > 0 and not retry_mod.TESTING:
            await asyncio.sleep(paused)  # Graph asked us to hold back (Retry-After), not a wait for work
        waited = await self.bucket.acquire(_cost(url, body))
        if waited:
            GRAPH_BUDGET_WAIT.inc(waited)
        headers = {"Accept": JSON, "User-Agent": USER_AGENT, "client-request-id": str(uuid.uuid4())}
        data = None
        if body is not None:
            headers["Content-Type"] = JSON
            data = orjson.dumps(body)
        try:
            authorization = await self._token.header(url)
            if authorization is not None:
                headers["Authorization"] = authorization
            async with self._session_now().request(
                method, _yarl(url), data=data, headers=headers, timeout=TIMEOUT, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except ClientAuthenticationError as exc:
            GRAPH_CALLS.labels(operation, "permanent").inc()
            raise PermanentError(f"Graph authentication failed: {exc.message}", status=401) from None
        except (TimeoutError, aiohttp.ClientError, ServiceRequestError, ServiceResponseError) as exc:
            GRAPH_CALLS.labels(operation, "transient").inc()
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransientError(f"Graph {method} {urlsplit(url).path}: {what}") from None
        if not 200 <= status < 300:
            mapped = map_graph_error(status, raw, method=method, url=url, retry_after=retry_after, now=self._clock())
            GRAPH_CALLS.labels(operation, _outcome(mapped)).inc()
            if isinstance(mapped, ThrottledError) and mapped.retry_after:
                until = time.monotonic() + min(mapped.retry_after, self.retry.horizon)
                self._paused_until = max(self._paused_until, until)
            raise mapped
        GRAPH_CALLS.labels(operation, "ok").inc()
        if not raw:
            return {}
        parsed = orjson.loads(raw)
        return parsed if isinstance(parsed, dict) else {"value": parsed}

    async def _call(self, call: Callable[[], Awaitable[T]], retry: bool) -> T:
        if not retry:
            return await call()
        return await call_with_retry(call, target="graph", policy=self.retry)

    async def get_json(
        self, url_or_path: str, params: Mapping[str, str] | None = None, *, operation: str = "get", retry: bool = True
    ) -> dict[str, Any]:
        """GET a Graph URL or path (absolute ``@odata.nextLink`` / ``deltaLink`` URLs included); retried."""
        url = self.url(url_or_path, params)
        return await self._call(lambda: self._send("GET", url, operation), retry)

    async def post_json(
        self, path: str, body: Mapping[str, Any] | None = None, *, operation: str = "post", retry: bool = False
    ) -> dict[str, Any]:
        """POST JSON; not retried unless ``retry`` (only for idempotent actions such as reauthorize)."""
        url = self.url(path)
        return await self._call(lambda: self._send("POST", url, operation, body if body is not None else {}), retry)

    async def patch_json(
        self, path: str, body: Mapping[str, Any], *, operation: str = "patch", retry: bool = True
    ) -> dict[str, Any]:
        """PATCH JSON (idempotent: retried)."""
        url = self.url(path)
        return await self._call(lambda: self._send("PATCH", url, operation, body), retry)

    async def delete(self, path: str, *, operation: str = "delete", retry: bool = True) -> None:
        """DELETE (idempotent: retried). A 404 raises NotFoundError; callers that delete decide if that is fine."""
        url = self.url(path)
        await self._call(lambda: self._send("DELETE", url, operation), retry)

    async def aclose(self) -> None:
        """Close the HTTP session and the credential, if this client created them."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
        await self._token.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
