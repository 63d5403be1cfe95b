"""The AskCody SCIM client: aiohttp, Bearer token, ``application/scim+json``.

Every request takes a token from the shared :class:`~reactor.ratelimit.TokenBucket`, is counted in
``reactor_scim_requests_total{method,outcome}`` and goes through :func:`reactor.retry.call`. Answers
are mapped into the exception tree of :mod:`reactor.errors`:

    429                       ThrottledError (retry_after from Retry-After)
    503 with Retry-After      ThrottledError
    408, 5xx (but 501)        TransientError
    timeout, connection       TransientError
    404                       NotFoundError
    409                       ConflictError
    other 4xx, 501            ScimError (a PermanentError with the SCIM scimType and detail);
                              412 among them: an ``If-Match`` that AskCody's version no longer matches

Messages name the method, the path and the SCIM error; never the token.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from reactor import log, retry
from reactor.config import AskCodySettings
from reactor.domain.model import ScimGroup, ScimUser, UserAttributes
from reactor.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ReactorError,
    ThrottledError,
    TransientError,
    error_for_status,
)
from reactor.metrics import SCIM_REQUESTS
from reactor.ratelimit import TokenBucket
from reactor.retry import parse_retry_after
from reactor.scim import dialect as forms
from reactor.scim.bulk import WRITES, BulkSender, limits_of, with_version
from reactor.scim.resources import (
    group_body,
    has_groups,
    parse_group,
    parse_user,
    quote,
    resources,
    user_body,
    version_of,
    work_email,
)

SCIM_JSON = "application/scim+json"
RETRY_TARGET = "askcody"
MEMBER_BATCH = 100
LISTED_ATTRIBUTES = ",".join([
    "userName", "externalId", "active", "displayName", "name.givenName", "name.familyName", "emails",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
])
"""What a listing of every user asks for: what matching and planning read."""
PAGE_SIZE = 100


class ScimError(PermanentError):
    """AskCody refused a request (a 4xx other than 404/409/429, or 501), with the SCIM error detail."""

    def __init__(self, message: str, *, status: int, scim_type: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, status=status)
        self.scim_type = scim_type
        self.detail = detail


class AskCodyClient:
    """Async client of AskCody's SCIM 2.0 endpoint.

    :param settings: ``[askcody]``: ``scim_url`` (the base, e.g. ``…/scim/v2``), ``token``,
        ``dialect``, ``max_requests_per_second``, ``timeout_seconds``, ``bulk``, ``etags``.
    :param bucket: the token bucket shared by every worker; one of ``max_requests_per_second`` by default.
    :param session: an aiohttp session to use (left open); by default the client opens its own and
        :meth:`aclose` closes it.
    :param retry_policy: the retries of each request (:data:`reactor.retry.DEFAULT_POLICY`).

    Use it as ``async with AskCodyClient(settings) as client: ...`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        settings: AskCodySettings,
        bucket: TokenBucket | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        retry_policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
    ) -> None:
        self.settings = settings
        self.base_url = settings.scim_url.rstrip("/")
        self.dialect = settings.dialect
        self.bucket = bucket if bucket is not None else TokenBucket(settings.max_requests_per_second)
        self.retry_policy = retry_policy
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._email_filter = 'emails[type eq "work"].value eq {}'
        self._member_filter = "members[value eq {}]"
        self._or_filter = True
        """False once AskCody refused a filter with ``or``: one request per key from then on."""
        self._bulk: BulkSender | None = None
        self._bulk_known = not settings.bulk
        """True once it is known whether writes go through ``POST /Bulk`` (``askcody.bulk`` off: never)."""
        self._etags: bool | None = None if settings.etags else False
        """Whether writes carry the ``If-Match`` they are given: None until AskCody's
        ServiceProviderConfig has said (``askcody.etags`` off: never)."""
        self._config_lock = asyncio.Lock()
        self._writing = 0
        """Plain writes waiting or in flight: a second one makes the client ask AskCody about bulk."""

    async def __aenter__(self) -> AskCodyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client opened (not one it was given)."""
        if self._bulk is not None:
            await self._bulk.aclose()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport -------------------------------------------------------------------------------

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        retried: bool = True,
        if_match: str | None = None,
    ) -> Any:
        """Send one request (retried per the policy unless ``retried`` is false); return its JSON or None.

        ``if_match``: the version a write expects the resource to have (its ETag), sent as ``If-Match``
        when AskCody's ServiceProviderConfig advertises ``etag`` and ``askcody.etags`` is on, else left
        out (asking costs one request, once per client, at the first write given a version); a 412
        then says AskCody holds another version. A write's answer carries the version AskCody gave it
        as ``meta.version``, also when only the ``ETag`` header (or a bulk result) told it.
        """
        if not retried:
            return await self._send(method, path, body, params, if_match)
        return await retry.call(
            lambda: self._send(method, path, body, params, if_match), target=RETRY_TARGET, policy=self.retry_policy
        )

    async def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None, if_match: str | None = None
    ) -> Any:
        if method not in WRITES or (if_match is not None and not await self._etags_on()):
            if_match = None
        if method in WRITES and not params and path != "/Bulk":
            # Bulk is worth asking about only once writes overlap: a lone write is a plain request.
            if self._bulk_known:
                sender = self._bulk
            else:
                sender = await self._discover_bulk() if self._writing else None
            if sender is not None and sender.enabled:
                return await sender.submit(method, path, body, if_match)
            self._writing += 1
            try:
                await self.bucket.acquire()
                return await self._transmit(method, path, body, params, if_match)
            finally:
                self._writing -= 1
        await self.bucket.acquire()
        return await self._transmit(method, path, body, params, if_match)

    async def _discover_bulk(self) -> BulkSender | None:
        """A :class:`BulkSender` when AskCody's ServiceProviderConfig advertises bulk (read once)."""
        await self._read_config()
        return self._bulk

    async def _etags_on(self) -> bool:
        """Whether writes carry ``If-Match``: AskCody's ServiceProviderConfig advertises ``etag``
        (read once) and ``askcody.etags`` is on."""
        if self._etags is None:
            await self._read_config()
        return bool(self._etags)

    async def _read_config(self) -> None:
        """Read AskCody's ServiceProviderConfig once, when a write first needs it: whether writes go
        through ``POST /Bulk`` and whether they carry ``If-Match``. A transient failure leaves both
        questions open (plain, unconditional requests meanwhile); any other answer settles them."""
        async with self._config_lock:
            if self._bulk_known and self._etags is not None:
                return
            try:
                await self.bucket.acquire()
                config = await self._transmit("GET", "/ServiceProviderConfig", None, None)
            except TransientError as exc:
                log.event("scim_service_provider_config_unknown", level="warning", error=str(exc))
                return
            except ReactorError as exc:
                config = None
                log.event("scim_service_provider_config_refused", level="warning", error=str(exc), bulk="off", etags="off")
            if not self._bulk_known:
                limits = limits_of(config)
                if limits is not None:
                    self._bulk = BulkSender(
                        lambda m, p, b, v: self._transmit(m, p, b, None, v), self.bucket.acquire,
                        lambda where, status, raw: _classify(where, status, raw, None)[1], limits,
                    )
                self._bulk_known = True
                log.event(
                    "scim_bulk", enabled=limits is not None,
                    max_operations=limits.max_operations if limits else 0,
                    max_payload_size=limits.max_payload_size if limits else 0,
                )
            if self._etags is None:
                self._etags = etags_of(config)
                log.event("scim_etags", enabled=self._etags)

    async def _transmit(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None, if_match: str | None = None
    ) -> Any:
        """One HTTP request (the rate-limit token already taken); its JSON, or the mapped error. An
        answer's ``ETag`` is its ``meta.version`` when the body carries none (an empty body: just that)."""
        headers = {"Authorization": f"Bearer {self.settings.token.reveal()}", "Accept": SCIM_JSON}
        if if_match is not None:
            headers["If-Match"] = if_match
        data = None
        if body is not None:
            headers["Content-Type"] = SCIM_JSON
            data = orjson.dumps(body)
        where = f"{method} {path}"
        try:
            async with self._session_now().request(
                method, self.base_url + path, params=params, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                etag = resp.headers.get("ETag") or None
        except TimeoutError:
            SCIM_REQUESTS.labels(method, "timeout").inc()
            raise TransientError(f"{where}: timed out after {self.settings.timeout_seconds:g}s") from None
        except aiohttp.ClientError as exc:
            SCIM_REQUESTS.labels(method, "connection_error").inc()
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None
        outcome, error = _classify(where, status, raw, retry_after)
        SCIM_REQUESTS.labels(method, outcome).inc()
        log.event("scim_answered", level="debug", request=where, status=status)
        if error is not None:
            raise error
        if not raw.strip():
            return with_version(None, etag)
        try:
            return with_version(orjson.loads(raw), etag)
        except orjson.JSONDecodeError:
            raise PermanentError(f"{where}: answered {status} with a body that is not JSON", status=status) from None

    async def _search(
        self, endpoint: str, scim_filter: str | None = None, *, attributes: str | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[dict[str, Any]]:
        start = 1
        while True:
            params = {"startIndex": str(start), "count": str(page_size)}
            if scim_filter is not None:
                params["filter"] = scim_filter
            if attributes is not None:
                params["attributes"] = attributes
            data = await self.request("GET", endpoint, params=params)
            page = resources(data)
            for item in page:
                yield item
            total = data.get("totalResults") if isinstance(data, dict) else None
            start += len(page)
            if not page or not isinstance(total, int) or start > total:
                return

    async def _first(self, endpoint: str, scim_filter: str, *, attributes: str | None = None) -> dict[str, Any] | None:
        params = {"filter": scim_filter}
        if attributes is not None:
            params["attributes"] = attributes
        found = resources(await self.request("GET", endpoint, params=params))
        if len(found) > 1:
            log.event("scim_filter_ambiguous", level="warning", endpoint=endpoint, filter=scim_filter, matches=len(found))
        return found[0] if found else None

    # -- readiness -------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Readiness: a ``userName`` filter with a random value must answer 200 (as Entra's test
        connection does). One attempt, no retry; raises the mapped error otherwise."""
        probe = f"reactor-ping-{uuid.uuid4()}"
        data = await self.request("GET", "/Users", params={"filter": f"userName eq {quote(probe)}"}, retried=False)
        if not isinstance(data, dict):
            raise PermanentError("GET /Users: the answer to a filter is not a SCIM ListResponse")

    # -- users -----------------------------------------------------------------------------------

    async def find_user(
        self,
        external_id: str,
        user_name: str | None = None,
        email: str | None = None,
        *,
        with_groups: bool = True,
    ) -> ScimUser | None:
        """The user matched by ``externalId``, else ``userName``, else work e-mail; None when none.

        One request: a filter with ``or`` over the keys given, the precedence applied to the users it
        returns. When AskCody refuses ``or`` (400/501), one request per key from then on (this client's
        lifetime). The e-mail filter is ``emails[type eq "work"].value eq …``; when AskCody refuses that
        complex filter, ``emails.value eq …`` is used from then on.
        """
        if self._or_filter:
            try:
                data = await self._find_by_any(external_id, user_name, email)
            except ScimError as exc:
                if exc.status not in (400, 501):
                    raise
                log.event("scim_filter_fallback", filter="or", now="one filter per key", scim_type=exc.scim_type)
                self._or_filter = False
            else:
                return None if data is None else await self._user(data, with_groups)
        data = await self._first("/Users", f"externalId eq {quote(external_id)}")
        if data is None and user_name:
            data = await self._first("/Users", f"userName eq {quote(user_name)}")
        if data is None and email:
            data = await self._find_by_email(email)
        if data is None:
            return None
        return await self._user(data, with_groups)

    async def _find_by_any(self, external_id: str, user_name: str | None, email: str | None) -> dict[str, Any] | None:
        """One ``or`` filter over the keys; the best match by precedence (externalId, userName, e-mail)."""
        terms = [f"externalId eq {quote(external_id)}"]
        if user_name:
            terms.append(f"userName eq {quote(user_name)}")
        if email:
            terms.append(self._email_filter.format(quote(email)))
        found = resources(await self.request("GET", "/Users", params={"filter": " or ".join(terms)}))
        return best_match(found, external_id, user_name, email)

    async def _find_by_email(self, email: str) -> dict[str, Any] | None:
        try:
            return await self._first("/Users", self._email_filter.format(quote(email)))
        except ScimError as exc:
            if exc.status not in (400, 501) or self._email_filter.startswith("emails.value"):
                raise
            log.event(
                "scim_filter_fallback", filter='emails[type eq "work"].value', now="emails.value", scim_type=exc.scim_type
            )
            self._email_filter = "emails.value eq {}"
            return await self._first("/Users", self._email_filter.format(quote(email)))

    async def list_users(self) -> AsyncIterator[ScimUser]:
        """Every user AskCody holds, paged (``count``/``startIndex``), with only the attributes the
        matching and planning read (``attributes=``); without their groups."""
        async for data in self._search("/Users", attributes=LISTED_ATTRIBUTES):
            if "id" in data:
                yield parse_user(data, groups=frozenset())

    async def count_users(self) -> int:
        """How many users AskCody holds (``totalResults`` of a page of none: one request)."""
        data = await self.request("GET", "/Users", params={"count": "0", "attributes": "id"})
        total = data.get("totalResults") if isinstance(data, dict) else None
        return total if isinstance(total, int) else 0

    async def get_user(self, scim_id: str, *, with_groups: bool = True) -> ScimUser:
        """The user by SCIM id, with its group memberships (NotFoundError when gone)."""
        data = await self.request("GET", f"/Users/{segment(scim_id)}")
        return await self._user(data, with_groups)

    async def _user(self, data: dict[str, Any], with_groups: bool) -> ScimUser:
        if not with_groups or has_groups(data):
            return parse_user(data)
        return parse_user(data, groups=await self.user_groups(str(data["id"])))

    async def user_groups(self, scim_id: str) -> frozenset[str]:
        """SCIM ids of the groups the user is a member of (``/Groups?filter=members[value eq …]``,
        ``members.value eq …`` when the server refuses the first form)."""
        try:
            return await self._groups_with_member(scim_id)
        except ScimError as exc:
            if exc.status not in (400, 501) or self._member_filter.startswith("members.value"):
                raise
            log.event("scim_filter_fallback", filter="members[value eq …]", now="members.value", scim_type=exc.scim_type)
            self._member_filter = "members.value eq {}"
            return await self._groups_with_member(scim_id)

    async def _groups_with_member(self, scim_id: str) -> frozenset[str]:
        found = self._search("/Groups", self._member_filter.format(quote(scim_id)), attributes="id")
        return frozenset([str(g["id"]) async for g in found if "id" in g])

    async def create_user(self, attrs: UserAttributes, *, active: bool = True) -> tuple[ScimUser, bool]:
        """Create the user with the core and enterprise schemas; ``(user, True)``.

        On 409 (``uniqueness``: it exists already, e.g. created by hand, or an earlier attempt did
        succeed) the existing user is looked up by externalId, userName and e-mail and returned as
        ``(existing, False)``: whether and how to adopt it is the caller's decision
        (:func:`reactor.sync.apply.apply_operations`). Raises :class:`ConflictError` when it cannot be found.
        """
        try:
            data = await self.request("POST", "/Users", body=user_body(attrs, active=active))
        except ConflictError:
            existing = await self.find_user(attrs.external_id, attrs.user_name, attrs.email)
            if existing is None:
                raise
            return existing, False
        if not isinstance(data, dict) or "id" not in data:
            found = await self.find_user(attrs.external_id, with_groups=False)
            if found is None:
                raise PermanentError("POST /Users: the answer names no id and the user cannot be found")
            return found, True
        return parse_user(data, groups=frozenset()), True

    async def update_user(self, scim_id: str, changes: Mapping[str, str | None], *, version: str | None = None) -> str | None:
        """PATCH-replace the changed attributes (``None`` removes one); names as in
        :class:`~reactor.domain.model.UserAttributes`. ``version``: the user's version the changes
        were planned from (``If-Match``, see :meth:`request`). Returns the user's version after the
        write (``version`` when there was nothing to write), None when AskCody did not say."""
        if not changes:
            return version
        body = forms.replace_attributes(changes, self.dialect)
        return version_of(await self.request("PATCH", f"/Users/{segment(scim_id)}", body=body, if_match=version))

    async def set_active(self, scim_id: str, active: bool, *, version: str | None = None) -> str | None:
        """PATCH ``active`` (boolean in the rfc dialect, ``"True"``/``"False"`` in the entra dialect).
        ``version`` and the answer as for :meth:`update_user`."""
        body = forms.set_active(active, self.dialect)
        return version_of(await self.request("PATCH", f"/Users/{segment(scim_id)}", body=body, if_match=version))

    async def delete_user(self, scim_id: str) -> bool:
        """DELETE the user; False when it was already gone."""
        try:
            await self.request("DELETE", f"/Users/{segment(scim_id)}")
        except NotFoundError:
            return False
        return True

    # -- groups ----------------------------------------------------------------------------------

    async def find_group(self, external_id: str, display_name: str | None = None) -> ScimGroup | None:
        """The group with this ``externalId`` (Entra group id), else with this ``displayName``."""
        attributes = "id,displayName,externalId"
        data = await self._first("/Groups", f"externalId eq {quote(external_id)}", attributes=attributes)
        if data is None and display_name:
            data = await self._first("/Groups", f"displayName eq {quote(display_name)}", attributes=attributes)
        return None if data is None else parse_group(data)

    async def ensure_group(self, external_id: str, display_name: str) -> ScimGroup:
        """Find the group (:meth:`find_group`) or create it with ``externalId``.

        A group found by name without an ``externalId`` gets ours; one that carries another
        ``externalId`` is used as is (logged).
        """
        group = await self.find_group(external_id, display_name)
        if group is None:
            try:
                return await self._create_group(external_id, display_name)
            except ConflictError:
                group = await self.find_group(external_id, display_name)
                if group is None:
                    raise
        if group.external_id is None:
            body = forms.members_patch([{"op": "replace", "path": "externalId", "value": external_id}], self.dialect)
            await self.request("PATCH", f"/Groups/{segment(group.id)}", body=body)
            group = ScimGroup(group.id, group.display_name, external_id, group.members)
        elif group.external_id != external_id:
            log.event(
                "scim_group_external_id_differs", level="warning", group=group.display_name, scim_id=group.id,
                external_id=group.external_id, expected=external_id,
            )
        return group

    async def _create_group(self, external_id: str, display_name: str) -> ScimGroup:
        """``POST /Groups``, retried without creating duplicates: nothing makes AskCody refuse a second
        group with the same name (RFC 7643: ``displayName`` is not unique), so after an attempt whose
        outcome is unknown (timeout, connection lost, 5xx: it may have been applied) the group is
        looked up by ``externalId`` before posting again."""

        async def attempt() -> ScimGroup:
            try:
                data = await self.request("POST", "/Groups", body=group_body(display_name, external_id), retried=False)
            except ThrottledError:
                raise
            except TransientError:
                found = await self.find_group(external_id)
                if found is None:
                    raise
                return found
            return parse_group(data)

        return await retry.call(attempt, target=RETRY_TARGET, policy=self.retry_policy)

    async def get_group(self, scim_id: str) -> ScimGroup:
        """The group by SCIM id, with its members (NotFoundError when gone)."""
        return parse_group(await self.request("GET", f"/Groups/{segment(scim_id)}"))

    async def add_members(self, scim_group_id: str, user_ids: Iterable[str], *, batch: int = MEMBER_BATCH) -> None:
        """Add members, ``batch`` per PATCH (one ``add`` with a value list)."""
        for chunk in _chunks(user_ids, batch):
            body = forms.members_patch(forms.add_members(chunk), self.dialect)
            await self.request("PATCH", f"/Groups/{segment(scim_group_id)}", body=body)

    async def remove_members(self, scim_group_id: str, user_ids: Iterable[str], *, batch: int = MEMBER_BATCH) -> None:
        """Remove members, ``batch`` per PATCH (rfc: one filtered op each; entra: a value list).

        A member that is not there (400 ``noTarget``) counts as removed: when a batch fails so, its
        members are removed one by one.
        """
        path = f"/Groups/{segment(scim_group_id)}"
        for chunk in _chunks(user_ids, batch):
            try:
                body = forms.members_patch(forms.remove_members(chunk, self.dialect), self.dialect)
                await self.request("PATCH", path, body=body)
            except ScimError as exc:
                if exc.scim_type != "noTarget":
                    raise
                for uid in chunk:
                    try:
                        body = forms.members_patch(forms.remove_members([uid], self.dialect), self.dialect)
                        await self.request("PATCH", path, body=body)
                    except ScimError as one:
                        if one.scim_type != "noTarget":
                            raise


def best_match(
    found: Iterable[dict[str, Any]], external_id: str, user_name: str | None, email: str | None
) -> dict[str, Any] | None:
    """Of the users ``found``, the one matched by ``externalId``, else by ``userName``, else by work
    e-mail (the first of each kind; keys compared without letter case, as SCIM compares them)."""
    candidates = list(found)

    def first(key: Callable[[dict[str, Any]], str | None], wanted: str | None) -> dict[str, Any] | None:
        if not wanted:
            return None
        hits = [u for u in candidates if (key(u) or "").casefold() == wanted.casefold()]
        if len(hits) > 1:
            log.event("scim_filter_ambiguous", level="warning", endpoint="/Users", matches=len(hits))
        return hits[0] if hits else None

    return (
        first(lambda u: _text(u.get("externalId")), external_id)
        or first(lambda u: _text(u.get("userName")), user_name)
        or first(lambda u: work_email(u.get("emails")), email)
    )


def etags_of(config: Any) -> bool:
    """Whether a ServiceProviderConfig advertises ``etag.supported``."""
    etag = config.get("etag") if isinstance(config, dict) else None
    return isinstance(etag, dict) and etag.get("supported") in (True, "true", "True")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def segment(value: str) -> str:
    """``value`` as one URL path segment, every reserved character percent-encoded. ``.`` and ``..``
    cannot name a resource (URL normalisation turns ``/Users/..`` into ``/``, even encoded): no such
    object, and no request."""
    if value in ("", ".", ".."):
        raise NotFoundError(f"{value!r} cannot be a SCIM id")
    return urllib.parse.quote(value, safe="")


def _chunks(items: Iterable[str], size: int) -> list[list[str]]:
    unique = list(dict.fromkeys(items))
    return [unique[i : i + size] for i in range(0, len(unique), size)]




def _error_detail(raw: bytes) -> tuple[str | None, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    scim_type = data.get("scimType")
    detail = data.get("detail")
    return (str(scim_type) if scim_type else None, str(detail) if detail else None)


def _classify(where: str, status: int, raw: bytes, retry_after: str | None) -> tuple[str, Exception | None]:
    if 200 <= status < 300:
        return "ok", None
    scim_type, detail = _error_detail(raw)
    text = f"{where}: {status}" + (f" {scim_type}" if scim_type else "") + (f": {detail}" if detail else "")
    if status in (401, 403):
        text += " (check askcody.token)"
    error = error_for_status(
        status, text, retry_after=parse_retry_after(retry_after),
        permanent=lambda message, code: ScimError(message, status=code, scim_type=scim_type, detail=detail),
    )
    return _OUTCOMES.get(type(error), "server_error" if status >= 500 else "timeout"), error


_OUTCOMES: dict[type[Exception], str] = {
    ThrottledError: "throttled", NotFoundError: "not_found", ConflictError: "conflict", ScimError: "client_error",
}
"""The ``outcome`` label of ``reactor_scim_requests_total`` by error (a TransientError: by status)."""
