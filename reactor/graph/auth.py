"""Authentication for Graph: a static bearer token (simulators, tests) or an azure-identity credential.

:class:`BearerToken` gives the ``Authorization`` header of a request. It is only ever given for URLs
on the origin of ``graph.base_url`` (an ``@odata.nextLink`` to any other host would go out without
it), and plain ``http`` is refused except on loopback, as msgraph-sdk's Azure provider did. A
credential's token is cached and fetched again :data:`REFRESH_MARGIN` seconds before it expires, one
fetch at a time. Neither the token nor the header is ever part of a ``repr``, a log line or an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential

from reactor.config import GraphSettings
from reactor.errors import ConfigurationError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
REFRESH_MARGIN = 300.0
"""Seconds before a credential's token expires at which the next request fetches a new one (half of
its lifetime for a token that lives less than twice as long)."""


def check_base_url(base_url: str) -> str:
    """Return the host of ``base_url``; raise ConfigurationError unless it is https (or http on loopback)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"graph.base_url is not a valid http(s) URL: {base_url!r}")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ConfigurationError("graph.base_url must be https (plain http only for localhost, 127.0.0.1, ::1)")
    return host


def scope_for(base_url: str) -> str:
    """The ``.default`` scope of the Graph instance behind ``base_url`` (national clouds included)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}/.default"


def build_credential(settings: GraphSettings) -> AsyncTokenCredential:
    """The azure-identity (aio) credential named by the settings: secret, certificate, else the default chain.

    ``authority`` selects the national cloud's login host. With neither a secret nor a certificate,
    :class:`~azure.identity.aio.DefaultAzureCredential` is used (managed identity first in Azure, with
    ``client_id`` as the user-assigned identity when given).
    """
    from azure.identity.aio import CertificateCredential, ClientSecretCredential, DefaultAzureCredential

    authority = settings.authority.removeprefix("https://").rstrip("/")
    if settings.client_secret:
        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret.reveal(), authority=authority
        )
    if settings.certificate_path:
        return CertificateCredential(
            settings.tenant_id, settings.client_id, certificate_path=settings.certificate_path, authority=authority
        )
    return DefaultAzureCredential(
        authority=authority,
        managed_identity_client_id=settings.client_id or None,
        exclude_interactive_browser_credential=True,
    )


class BearerToken:
    """The ``Authorization`` header for requests to ``settings.base_url``'s origin.

    With ``settings.token`` (and no ``credential``) that token, as is. Otherwise tokens for
    :func:`scope_for` ``(base_url)`` from ``credential``, or from :func:`build_credential` (which
    this object then owns: :meth:`close` closes it). The credential's exceptions
    (``ClientAuthenticationError``, ``ServiceRequestError``, …) pass through to the caller.
    ``clock`` (epoch seconds) is compared with the tokens' ``expires_on``.
    """

    def __init__(
        self,
        settings: GraphSettings,
        credential: AsyncTokenCredential | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_base_url(settings.base_url)  # https, or plain http on loopback only
        parts = urlsplit(settings.base_url)
        self._origin = (parts.scheme, parts.netloc.lower())
        self._clock = clock
        self._scope = scope_for(settings.base_url)
        self._static: str | None = None
        self.owned: AsyncTokenCredential | None = None
        """The credential this object created (closed by :meth:`close`), if any."""
        self._credential: AsyncTokenCredential | None = None
        if settings.token and credential is None:
            self._static = f"Bearer {settings.token.reveal()}"
        else:
            self.owned = build_credential(settings) if credential is None else None
            self._credential = credential if credential is not None else self.owned
        self._header: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        kind = "static" if self._static is not None else type(self._credential).__name__
        return f"BearerToken({kind}, <redacted>)"

    def allowed(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the token: our origin (scheme, host and port) only."""
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc.lower()) == self._origin

    async def header(self, url: str) -> str | None:
        """``Bearer <token>`` for ``url``, or None when ``url`` is not on our origin."""
        if not self.allowed(url):
            return None
        if self._static is not None:
            return self._static
        if self._header is not None and self._clock() < self._refresh_at:
            return self._header
        async with self._lock:  # one fetch at a time; the others take what it fetched
            if self._header is None or self._clock() >= self._refresh_at:
                assert self._credential is not None
                token = await self._credential.get_token(self._scope)
                expires_on = float(token.expires_on)
                # A token that lives less than twice the margin is fetched again half-way through its life.
                margin = min(REFRESH_MARGIN, max(0.0, expires_on - self._clock()) / 2)
                self._header = f"Bearer {token.token}"
                self._refresh_at = expires_on - margin
            return self._header

    async def close(self) -> None:
        """Close the credential this object created (not one it was given)."""
        if self.owned is not None:
            await self.owned.close()
