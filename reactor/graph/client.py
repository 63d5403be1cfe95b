"""Raw-JSON access to Microsoft Graph through msgraph-sdk's request adapter.

The SDK gives us authentication, its middleware and ``ODataError``; responses are read as bytes
(``send_primitive_async(..., "bytes", ...)``) and parsed with orjson, because SDK models cost about
5 ms per user. The SDK's retry middleware is switched off (it retries POSTs blindly, and a retried
``POST /subscriptions`` can duplicate a subscription); retries follow the project's one policy,
:mod:`reactor.retry` (target ``graph``): reads (GET) and idempotent writes (PATCH, DELETE) are
retried, POSTs only when the caller says so. A ``Retry-After`` holds back every request of the
client, not just the one retried: Graph throttles the application, so the other workers wait too
(at most the retry horizon; not in ``retry.TESTING``).

Every failure is mapped into :mod:`reactor.errors` by :func:`reactor.errors.error_for_status` (the
same rules as the SCIM client's), except:

    410, or a sync-state code
    on a ``/delta`` URL            DeltaTokenExpired
    timeouts, connection errors    TransientError
    the error text                 status, Graph error code and message; never a token
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from kiota_abstractions.api_client_builder import register_default_deserializer
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption, UrlReplaceHandlerOption
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph_core import GraphClientFactory

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
from reactor.graph.auth import build_auth_provider, check_base_url
from reactor.metrics import GRAPH_CALLS
from reactor.retry import DEFAULT_POLICY, RetryPolicy, parse_retry_after
from reactor.retry import call as call_with_retry

T = TypeVar("T")

ERROR_MAP: dict[str, Any] = {"XXX": ODataError}
DELTA_EXPIRED_MARKERS = ("syncstate", "resync", "deltatoken", "tokenexpired")
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _http_client() -> httpx.AsyncClient:
    """An httpx client with the SDK's default middleware, its retry handler switched off."""
    options: dict[str, Any] = {
        RetryHandlerOption.get_key(): RetryHandlerOption(delay=0, max_retries=0, should_retry=False),
        UrlReplaceHandlerOption.get_key(): UrlReplaceHandlerOption(enabled=False),
    }
    client = httpx.AsyncClient(timeout=TIMEOUT, http2=True)
    wrapped: httpx.AsyncClient = GraphClientFactory.create_with_default_middleware(client=client, options=options)
    return wrapped




def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name) or getter(name.lower())
    return str(value) if value is not None else None


def map_api_error(exc: APIError, *, method: str, url: str, now: float | None = None) -> ReactorError:
    """Translate the SDK's error for a Graph answer into the reactor's exception tree."""
    status = exc.response_status_code or 0
    code, message = "", ""
    if isinstance(exc, ODataError) and exc.error is not None:
        code = exc.error.code or ""
        message = exc.error.message or ""
    path = urlsplit(url).path
    text = f"Graph {method} {path}: {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    is_delta = path.rstrip("/").endswith("/delta")
    if is_delta and (status == 410 or any(m in code.lower() for m in DELTA_EXPIRED_MARKERS)):
        return DeltaTokenExpired(text)
    retry_after = parse_retry_after(_header(exc.response_headers, "Retry-After"), now=now)
    return error_for_status(status, text, retry_after=retry_after)


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


class GraphClient:
    """Async Graph access returning parsed JSON; see the module docstring for retries and errors.

    ``retry`` is the policy of retried calls (``reactor.retry.testing()`` removes its sleeps in tests);
    ``clock`` (epoch seconds) turns a ``Retry-After`` date into seconds; ``http_client`` and
    ``credential`` replace the defaults (the client closes only what it created).
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy = DEFAULT_POLICY,
        http_client: httpx.AsyncClient | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        check_base_url(settings.base_url)
        # Error bodies are parsed by the SDK into ODataError; GraphServiceClient would register this.
        register_default_deserializer(JsonParseNodeFactory)
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.retry = retry
        self._clock = clock
        self._paused_until = 0.0
        self._origin = self._origin_of(self.base_url)
        auth, self._owned_credential = build_auth_provider(settings, credential)
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else _http_client()
        self.adapter = GraphRequestAdapter(auth, client=self._http)
        self.adapter.base_url = self.base_url

    @staticmethod
    def _origin_of(url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        return parts.scheme, parts.netloc.lower()

    def url(self, url_or_path: str, params: Mapping[str, str] | None = None) -> str:
        """An absolute URL: ``url_or_path`` on our Graph origin (an absolute URL must be on it), plus ``params``."""
        if url_or_path.startswith(("http://", "https://")):
            if self._origin_of(url_or_path) != self._origin:
                raise PermanentError(f"refusing a Graph URL outside {self._origin[1]}: {urlsplit(url_or_path).netloc}")
            url = url_or_path
        else:
            url = f"{self.base_url}/{url_or_path.lstrip('/')}"
        if params:
            sep = "&" if "?" in url else "?"
            url += sep + urlencode(dict(params), quote_via=quote, safe="$,'()")
        return url

    async def _send(self, method: Method, url: str, operation: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        info = RequestInformation()
        info.http_method = method
        info.url = url
        info.headers.try_add("Accept", "application/json")
        if body is not None:
            info.set_stream_content(orjson.dumps(body), "application/json")
        paused = self._paused_until - time.monotonic()
        if paused > 0 and not retry_mod.TESTING:
            await asyncio.sleep(paused)  # Graph asked us to hold back (Retry-After), not a wait for work
        try:
            raw = await self.adapter.send_primitive_async(info, "bytes", ERROR_MAP)
        except APIError as exc:
            mapped = map_api_error(exc, method=method.value, url=url, now=self._clock())
            GRAPH_CALLS.labels(operation, _outcome(mapped)).inc()
            if isinstance(mapped, ThrottledError) and mapped.retry_after:
                until = time.monotonic() + min(mapped.retry_after, self.retry.horizon)
                self._paused_until = max(self._paused_until, until)
            raise mapped from None
        except (httpx.TimeoutException, httpx.TransportError, ServiceRequestError, ServiceResponseError) as exc:
            GRAPH_CALLS.labels(operation, "transient").inc()
            raise TransientError(f"Graph {method.value} {urlsplit(url).path}: {type(exc).__name__}: {exc}") from None
        except ClientAuthenticationError as exc:
            GRAPH_CALLS.labels(operation, "permanent").inc()
            raise PermanentError(f"Graph authentication failed: {exc.message}", status=401) from None
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
        return await self._call(lambda: self._send(Method.GET, url, operation), retry)

    async def post_json(
        self, path: str, body: Mapping[str, Any] | None = None, *, operation: str = "post", retry: bool = False
    ) -> dict[str, Any]:
        """POST JSON; not retried unless ``retry`` (only for idempotent actions such as reauthorize)."""
        url = self.url(path)
        return await self._call(lambda: self._send(Method.POST, url, operation, body if body is not None else {}), retry)

    async def patch_json(
        self, path: str, body: Mapping[str, Any], *, operation: str = "patch", retry: bool = True
    ) -> dict[str, Any]:
        """PATCH JSON (idempotent: retried)."""
        url = self.url(path)
        return await self._call(lambda: self._send(Method.PATCH, url, operation, body), retry)

    async def delete(self, path: str, *, operation: str = "delete", retry: bool = True) -> None:
        """DELETE (idempotent: retried). A 404 raises NotFoundError; callers that delete decide if that is fine."""
        url = self.url(path)
        await self._call(lambda: self._send(Method.DELETE, url, operation), retry)

    async def aclose(self) -> None:
        """Close the HTTP client and the credential, if this client created them."""
        if self._own_http:
            await self._http.aclose()
        if self._owned_credential is not None:
            await self._owned_credential.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
